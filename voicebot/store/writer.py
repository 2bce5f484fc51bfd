"""Getting calls and handoffs into the store without ever blocking a call or losing data.

``StoreWriter`` is both the pipeline's ``RecordSink`` (transcripts, written as they happen)
and its ``HandoffSink`` (packets, committed before the transfer message plays):

- record updates arrive on the event loop; they are snapshotted and handed to one writer
  thread, which coalesces bursts (only the latest snapshot of a call is written, and only
  the turns that changed);
- a handoff is committed synchronously by the worker thread that asks for it;
- when the database is down mid-call, both go to a disk spool and are flushed once it
  answers again, so nothing recorded is lost; the call itself carries on.

With a ``worker_id`` (the process's ``voicebot.store.lease.WorkerLease``), every live call
it writes is owned by that worker, so that a crash leaves no call live forever. What the
writer remembers per call (the turns it wrote, the calls it finished) is bounded: a busy
server's memory does not grow with the calls it has served.
"""

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from voicebot.pipeline.record import CallRecord
from voicebot.store.spool import Spool
from voicebot.store.store import Store

log = logging.getLogger(__name__)

Summarizer = Callable[[list[str]], str]
Finished = Callable[[dict[str, Any]], None]

# Calls the writer remembers (their turns' hashes, whether they were passed on finished): a
# call forgotten and written again is written whole, which is only slower.
_REMEMBERED_CALLS = 1000


class StoreWriter:
    def __init__(
        self,
        store: Store,
        *,
        spool_dir: str | Path = "var/spool",
        webhooks: tuple[str, ...] = (),
        summarizer: Summarizer | None = None,
        retry_s: float = 2.0,
        on_finished: Finished | None = None,
        on_saved: Finished | None = None,
        worker_id: str | None = None,
    ) -> None:
        """``on_finished`` gets each finished call's record once it is stored (again when
        turns are added to it later), on the writer thread: it must only queue work (QA
        scoring, ``voicebot.qa.scorecard.QaScorer.submit``). ``on_saved`` gets the same and
        every record of a live call it stores, on the same terms (supervisor alerts,
        ``voicebot.qa.alerts.AlertMonitor.on_saved``). ``worker_id``: the live calls this
        writer is given are that worker's (see the module docstring)."""
        self.store = store
        self.spool = Spool(spool_dir)
        self.webhooks = webhooks
        self._summarizer = summarizer
        self._retry_s = retry_s
        self._on_finished = on_finished
        self._on_saved = on_saved
        self._worker_id = worker_id
        self._finished: OrderedDict[str, None] = OrderedDict()  # passed to on_finished
        self._pending: dict[str, dict[str, Any]] = {}
        # call id -> turn index -> hash, for the calls this process runs or ran lately
        self._written: OrderedDict[str, dict[int, str]] = OrderedDict()
        self._lock = threading.Condition()
        self._busy = True  # until the spool left by an earlier run is flushed (flush waits)
        self._closed = False
        self._llm = ThreadPoolExecutor(1, thread_name_prefix="voicebot-summary")
        self._thread = threading.Thread(target=self._run, name="voicebot-store", daemon=True)
        self._thread.start()

    # --- RecordSink ----------------------------------------------------------------------

    def update(self, record: CallRecord) -> None:
        """Queue the record (cheap: a snapshot); the writer thread stores it."""
        snapshot = record.to_dict()
        with self._lock:
            self._pending[record.call_id] = snapshot
            self._lock.notify_all()

    # --- HandoffSink ---------------------------------------------------------------------

    def submit(self, packet: dict[str, Any]) -> None:
        """Commit the packet (or spool it if the database fails); blocks until durable."""
        try:
            self.store.add_handoff(packet, self.webhooks)
        except SQLAlchemyError as exc:
            path = self.spool.put("handoff", packet["handoff_id"], packet)
            log.error("store unavailable, handoff spooled to %s: %s", path, exc)
            return
        if self._summarizer is not None:
            self._llm.submit(self._summarize, packet)

    def _summarize(self, packet: dict[str, Any]) -> None:
        """Swap in the LLM's summary once ready; the structured one stays on failure."""
        lines = [f"{t['role']}: {t['text']}" for t in packet["transcript"] if t["text"]]
        try:
            assert self._summarizer is not None
            summary = self._summarizer(lines).strip()
            if summary:
                self.store.set_summary(packet["handoff_id"], summary, "llm")
        except Exception as exc:  # an LLM or store hiccup must not lose the handoff
            log.warning("LLM summary for handoff %s failed: %s", packet["handoff_id"], exc)

    # --- lifecycle -----------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written (or spooled); True if all were."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        self._llm.shutdown(wait=True)
        self._llm = ThreadPoolExecutor(1, thread_name_prefix="voicebot-summary")
        return True

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout=5)

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            healthy = self._flush_spool()
        finally:
            with self._lock:
                self._busy = False
                self._lock.notify_all()
        while True:
            with self._lock:
                if not self._pending and not self._closed:
                    self._lock.wait(timeout=None if healthy else self._retry_s)
                if self._closed and not self._pending:
                    return
                batch, self._pending = self._pending, {}
                self._busy = True
            try:
                for snapshot in batch.values():
                    self._write(snapshot)
                healthy = self._flush_spool() if batch or not healthy else healthy
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _write(self, snapshot: dict[str, Any]) -> None:
        call_id = snapshot["call_id"]
        hashes = {i: _digest(t) for i, t in enumerate(snapshot["turns"])}
        known = self._written.get(call_id, {})
        changed = [i for i, h in hashes.items() if known.get(i) != h]
        try:
            self.store.save_call(snapshot, changed, worker_id=self._worker_id)
        except SQLAlchemyError as exc:
            self.spool.put("call", call_id, snapshot)
            _remember(self._written, call_id, {})  # every turn again once the store is back
            log.error("store unavailable, call %s spooled: %s", call_id, exc)
            return
        _remember(self._written, call_id, hashes)
        self.spool.remove("call", call_id)  # an older spooled snapshot must not come back
        if changed or call_id not in self._finished:
            self._finish(snapshot)

    def _finish(self, snapshot: dict[str, Any]) -> None:
        """Pass a stored snapshot to the hooks: ``on_saved`` always, ``on_finished`` once
        the call has ended."""
        hooks = [("on_saved", self._on_saved)]
        if snapshot.get("ended_by") is not None and self._on_finished is not None:
            _remember(self._finished, snapshot["call_id"], None)
            hooks.append(("on_finished", self._on_finished))
        for name, hook in hooks:
            if hook is None:
                continue
            try:
                hook(snapshot)
            except Exception:  # whatever it does, the writer goes on writing
                log.exception("%s failed for call %s", name, snapshot["call_id"])

    def _flush_spool(self) -> bool:
        """Move spooled handoffs and calls into the store; False while it still fails."""
        try:
            for path, packet in self.spool.items("handoff"):
                self.store.add_handoff(packet, self.webhooks)
                path.unlink()
                log.warning("spooled handoff %s flushed to the store", packet["handoff_id"])
            for path, snapshot in self.spool.items("call"):
                # A live call of this process is still its own; a spooled snapshot left by
                # an earlier process is nobody's, and is marked interrupted at start-up.
                mine = self._worker_id if snapshot["call_id"] in self._written else None
                self.store.save_call(snapshot, worker_id=mine)
                path.unlink()
                self._finish(snapshot)
        except SQLAlchemyError as exc:
            log.debug("store still unavailable: %s", exc)
            return False
        return True


def _remember(calls: OrderedDict, call_id: str, value: Any) -> None:
    calls[call_id] = value
    calls.move_to_end(call_id)
    while len(calls) > _REMEMBERED_CALLS:
        calls.popitem(last=False)


def _digest(turn: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(turn, sort_keys=True).encode(), digest_size=8).hexdigest()
