"""The calls of one server: capacity, live records, and where finished calls are read back.

With a database (``voicebot.store``) finished calls are read from it; without one they are
kept in memory (``MemoryHistory``). Either way ``TranscriptDir`` can also keep each call as
a JSON file, rewritten after every change, so a dropped connection loses nothing said.
"""

import asyncio
import json
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from voicebot.audio.io import write_text_atomic
from voicebot.pipeline.record import CallRecord, RecordSink
from voicebot.privacy.redact import redact_json
from voicebot.transports.line import LiveLine


class CallHistory(Protocol):
    """Finished (and, with a database, ongoing) calls; ``voicebot.store.Store`` is one."""

    def list_calls(self, limit: int = 50) -> list[dict[str, Any]]: ...

    def get_call(self, call_id: str) -> dict[str, Any] | None: ...


def call_row(record: CallRecord) -> dict[str, Any]:
    """One line of the calls list (the same columns the store lists)."""
    return {
        "call_id": record.call_id,
        "started_at": record.started_at,
        "caller_id": record.caller_id,
        "pack": record.pack,
        "ended_by": record.ended_by,
        "handoff_reason": record.handoff_reason,
        "duration_s": record.duration_s,
    }


class MemoryHistory:
    """``RecordSink`` and ``CallHistory`` in memory: the newest ``keep`` calls."""

    def __init__(self, keep: int = 1000) -> None:
        self._keep = keep
        self._records: OrderedDict[str, CallRecord] = OrderedDict()
        self._lock = threading.Lock()  # updates come from the loop, reads from API threads

    def update(self, record: CallRecord) -> None:
        with self._lock:
            self._records[record.call_id] = record
            while len(self._records) > self._keep:
                self._records.popitem(last=False)

    def list_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = [call_row(r) for r in self._records.values()]
        return sorted(rows, key=lambda r: r["started_at"], reverse=True)[:limit]

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(call_id)
            return record.to_dict() if record else None


class TranscriptDir:
    """``RecordSink`` writing ``DIR/<call_id>.json`` after every change, from one thread:
    the snapshot is taken on the event loop, masking (once more, like every store) and the
    disk write never block it, and writes of one call land in order. Files are 0600."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="voicebot-transcripts")

    def update(self, record: CallRecord) -> None:
        self._writer.submit(
            self._write, self.directory / f"{record.call_id}.json", record.to_dict()
        )

    @staticmethod
    def _write(path: Path, snapshot: dict[str, Any]) -> None:
        write_text_atomic(path, json.dumps(redact_json(snapshot), indent=2, ensure_ascii=False))

    def close(self) -> None:
        self._writer.shutdown(wait=True)


class CallSlot:
    """One call's place in the registry; as a ``RecordSink`` it keeps the record live."""

    def __init__(self, registry: "CallRegistry") -> None:
        self._registry = registry
        self.record: CallRecord | None = None
        self.line: LiveLine | None = None  # the call's line, once the call runs on it

    def update(self, record: CallRecord) -> None:
        self.record = record
        self._registry.live[record.call_id] = record


class CallRegistry:
    """Call slots (``max_calls``), the live records, and the history behind them."""

    def __init__(self, max_calls: int, history: CallHistory, sinks: list[RecordSink]) -> None:
        self.max_calls = max_calls
        self.history = history
        self._sinks = sinks
        self._slots: set[CallSlot] = set()
        self.live: dict[str, CallRecord] = {}
        self.closing = False  # the server is shutting down: no new call

    @property
    def active(self) -> int:
        return len(self._slots)

    def reserve(self) -> CallSlot | None:
        """A call slot, or None when ``max_calls`` calls are already in progress (or the
        server is shutting down)."""
        if self.closing or len(self._slots) >= self.max_calls:
            return None
        slot = CallSlot(self)
        self._slots.add(slot)
        return slot

    def release(self, slot: CallSlot) -> None:
        self._slots.discard(slot)
        if slot.record is not None:
            self.live.pop(slot.record.call_id, None)

    async def close(self, grace_s: float) -> None:
        """Shutting down: take no new call, end those in progress (each peer is told why,
        each record says ``shutdown``), and wait up to ``grace_s`` for them to finish."""
        self.closing = True
        for slot in list(self._slots):
            if slot.line is not None:
                slot.line.end(1012, "the server is shutting down: call again", by="shutdown")
        deadline = time.monotonic() + grace_s
        while self._slots and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def sinks(self, slot: CallSlot | None = None) -> list[RecordSink]:
        """Where a call's record goes: its slot (live) and the history; without a slot,
        only the history (a finished call's record updated later, e.g. a transfer's end)."""
        return [slot, *self._sinks] if slot is not None else list(self._sinks)

    def live_rows(self) -> list[dict[str, Any]]:
        return [call_row(r) | {"active": True} for r in self.live.values()]

    def live_call(self, call_id: str) -> dict[str, Any] | None:
        record = self.live.get(call_id)
        return record.to_dict() | {"active": True} if record else None
