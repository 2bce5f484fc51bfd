"""The supervisor view, ``/supervisor``, and its API: for supervisors (and admins).

- ``GET /api/supervisor/stream``: server-sent events: ``board`` (the live calls, sent again
  whenever it changes), ``alerts`` (the last day's, newest first) and then each ``alert`` as
  it is raised;
- ``GET /api/supervisor/board``: the live board once, as JSON;
- ``GET /api/alerts?since=24h``: the alerts raised since then (``voicebot.qa.alerts``);
- ``GET /api/kpis?since=7d[&until=...][&pack=...]``: ``voicebot.qa.kpis.kpi_report`` as JSON
  (404 naming the range when it holds no calls);
- ``GET /api/qa?since=7d[&failed=true]``: the scored calls, newest first;
  ``GET /api/qa/{call_id}``: a call's scorecard (audited like opening the call, which
  ``/api/calls/{id}`` does for its transcript).

The board comes from the database, never from one process's memory, so every worker behind
a load balancer shows the same center: the calls in progress on any worker (``ended_by``
not set yet) and the handed-off calls waiting for an agent or talking to one (open
handoffs). One ``LiveBoard`` per process reads it for all of that process's viewers: the
live calls once, then every ``poll_s`` only the rows written since (``calls.updated_at``,
``handoffs.updated_at``), in a worker thread.
"""

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from voicebot.auth import audit
from voicebot.errors import NoCallsError, StoreError, VoicebotError
from voicebot.qa.cli import parse_when
from voicebot.qa.kpis import call_intent, kpi_report
from voicebot.server.access import add_page, allow, signed_in, signed_in_principal
from voicebot.server.api import SUPERVISORS
from voicebot.server.limits import Budget
from voicebot.server.streams import follow, open_stream, sse
from voicebot.store.store import Store

STATIC = Path(__file__).parent / "static"
LOOKBACK_S = 2.0  # rows are read again this long back: workers' clocks and commits differ
ALERTS_SHOWN = 100  # the alerts a page opens with (those of the last ALERTS_SINCE_S)
ALERTS_SINCE_S = 24 * 3600.0
KPI_CACHE_S = 30.0  # a KPI report reads every call of its range: one read serves a while
_STATES = ("queued", "handing_off", "with_agent", "bot")  # the board's order


def sentiment(anger: float, cues: list[str]) -> dict[str, Any]:
    """How the caller sounds now, from the escalation lexicon's anger score of their words."""
    label = "angry" if anger >= 1.0 else "upset" if anger >= 0.5 else "calm"
    return {"label": label, "anger": round(anger, 2), "cues": sorted(set(cues))}


def live_row(record: dict[str, Any] | None, handoff: dict[str, Any] | None) -> dict[str, Any]:
    """One line of the board: a call in progress (``record``), its handoff if it has one,
    or only the handoff of a call the bot has finished (the caller is with the agents)."""
    packet = (handoff or {}).get("packet") or {}
    source = record if record is not None else {**packet, "turns": packet.get("transcript")}
    turns = source.get("turns") or []
    caller = [t for t in turns if t.get("role") == "caller" and not t.get("dropped")]
    angers = [_signals(t).get("anger") for t in caller]
    cues = [cue for t in caller for cue in _signals(t).get("anger_cues", [])]
    if record is None:  # a packet's turns carry no signals: its sentiment does
        angers = [(packet.get("signals") or {}).get("anger")]
        cues = list((packet.get("sentiment") or {}).get("cues") or [])
    measured = [a for a in angers if a is not None]
    if handoff is None:
        state = "bot"
    elif handoff["status"] == "claimed":
        state = "with_agent"
    else:
        state = "queued" if record is None else "handing_off"
    return {
        "call_id": source.get("call_id") or (handoff or {}).get("call_id"),
        "state": state,
        "pack": source.get("pack"),
        "caller_id": source.get("caller_id"),
        "started_at": (record or {}).get("started_at"),
        "intent": call_intent(source),
        "sentiment": sentiment(measured[-1] if measured else 0.0, cues),
        "turns": len(caller),
        "last_caller": caller[-1]["text"] if caller else "",
        "handoff_id": (handoff or {}).get("handoff_id"),
        "reason": (handoff or {}).get("reason"),
        "queued_at": (handoff or {}).get("created_at"),
        "claimed_at": (handoff or {}).get("claimed_at"),
        "agent": (handoff or {}).get("agent"),
    }


def _signals(turn: dict[str, Any]) -> dict[str, Any]:
    return (turn.get("policy") or {}).get("signals") or {}


class LiveBoard:
    """The live calls and recent alerts of the whole center, as this process last read them."""

    def __init__(self, store: Store, poll_s: float = 0.5) -> None:
        self.store = store
        self.poll_s = poll_s
        self.version = 0  # moves when the board's content changes
        self.alert_seq = 0  # how many alerts this board has taken in
        self._calls: dict[str, dict[str, Any]] = {}  # call id -> record of a live call
        self._handoffs: dict[str, dict[str, Any]] = {}  # call id -> its open handoff
        self._alerts: deque[tuple[int, dict[str, Any]]] = deque(maxlen=ALERTS_SHOWN)
        self._alert_ids: set[str] = set()
        self._rows: list[dict[str, Any]] = []
        self._read_at: float | None = None  # wall time the last read started
        self._fresh_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read what changed, unless this board was read less than ``poll_s`` ago."""
        async with self._lock:
            if time.monotonic() - self._fresh_at < self.poll_s:
                return
            started = time.time()
            calls, handoffs, alerts = await asyncio.to_thread(self._read, self._read_at)
            self._apply(calls, handoffs, alerts)
            self._read_at, self._fresh_at = started, time.monotonic()

    def _read(self, since: float | None) -> tuple[list, list, list]:
        """In a worker thread: the first time, everything open; then what changed."""
        if since is None:
            calls = self.store.calls_changed(None)
            handoffs = [
                *self.store.list_handoffs("queued", limit=1000),
                *self.store.list_handoffs("claimed", limit=1000),
            ]
            alerts = self.store.list_alerts(time.time() - ALERTS_SINCE_S, limit=ALERTS_SHOWN)
        else:
            calls = self.store.calls_changed(since - LOOKBACK_S)
            handoffs = self.store.list_handoffs(None, since=since - LOOKBACK_S, limit=1000)
            alerts = self.store.list_alerts(since - LOOKBACK_S, limit=ALERTS_SHOWN)
        return calls, handoffs, alerts

    def _apply(self, calls: list, handoffs: list, alerts: list) -> None:
        for row in calls:
            if row["ended_by"] is None:
                self._calls[row["call_id"]] = row["record"]
            else:
                self._calls.pop(row["call_id"], None)
        for row in sorted(handoffs, key=lambda r: r["updated_at"]):
            if row["status"] == "closed":
                self._handoffs.pop(row["call_id"], None)
            else:
                self._handoffs[row["call_id"]] = row
        for alert in sorted(alerts, key=lambda a: a["created_at"]):
            if alert["alert_id"] not in self._alert_ids:
                self._alert_ids.add(alert["alert_id"])
                self.alert_seq += 1
                self._alerts.append((self.alert_seq, alert))
        if len(self._alert_ids) > 10 * ALERTS_SHOWN:  # keep the ids of what is shown
            self._alert_ids = {a["alert_id"] for _, a in self._alerts}
        ids = self._calls.keys() | self._handoffs.keys()
        rows = [live_row(self._calls.get(i), self._handoffs.get(i)) for i in ids]
        rows.sort(key=lambda r: (_STATES.index(r["state"]), r["queued_at"] or 0, r["call_id"]))
        if rows != self._rows:
            self._rows = rows
            self.version += 1

    def rows(self) -> list[dict[str, Any]]:
        """The board, with each waiting caller's time in queue as of now."""
        now = time.time()
        return [r | {"queue_s": _queue_s(r, now)} for r in self._rows]

    def alerts(self, after: int = 0) -> list[dict[str, Any]]:
        """The alerts taken in after number ``after``, newest first."""
        return [alert for seq, alert in reversed(self._alerts) if seq > after]


def _queue_s(row: dict[str, Any], now: float) -> float | None:
    if row["queued_at"] is None:
        return None
    return round((row["claimed_at"] or now) - row["queued_at"], 1)


def supervisor_router(
    store: Store, *, streams: Budget | None = None, board: LiveBoard | None = None
) -> APIRouter:
    """``streams``: the server's budget of open event streams (shared with the desk)."""
    router = APIRouter()
    streams = streams or Budget("event_streams", 64)
    board = board or LiveBoard(store)
    kpi_cache: dict[tuple, tuple[float, dict[str, Any]]] = {}
    add_page(router, "/supervisor", STATIC / "supervisor.html", signed_in("supervisor", page=True))
    add_page(router, "/supervisor.js", STATIC / "supervisor.js", SUPERVISORS)

    @router.get("/api/supervisor/stream")
    @allow(SUPERVISORS)
    async def stream(request: Request) -> Any:
        who = signed_in_principal(request)
        return await open_stream(
            streams,
            "pages are following live events",
            _events(board, request),
            lambda: asyncio.to_thread(audit, store, who, "viewed", "queue", "supervisor"),
        )

    @router.get("/api/supervisor/board")
    @allow(SUPERVISORS)
    async def live(request: Request) -> list[dict[str, Any]]:
        await asyncio.to_thread(
            audit, store, signed_in_principal(request), "viewed", "queue", "board"
        )
        await board.refresh()
        return board.rows()

    @router.get("/api/alerts")
    @allow(SUPERVISORS)
    def list_alerts(
        since: str = "24h", limit: int = Query(100, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        return store.list_alerts(_when(since).timestamp(), limit=limit)

    @router.get("/api/kpis")
    @allow(SUPERVISORS)
    def kpis(since: str = "7d", until: str | None = None, pack: str | None = None) -> Any:
        key = (since, until, pack)
        cached = kpi_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < KPI_CACHE_S:
            return cached[1]
        start, end = _range(since, until)
        try:
            report = kpi_report(store, start, end, pack).to_dict()
        except NoCallsError as exc:
            raise HTTPException(404, str(exc)) from exc
        kpi_cache.clear()  # one report kept: the page asks for one range at a time
        kpi_cache[key] = (time.monotonic(), report)
        return report

    @router.get("/api/qa")
    @allow(SUPERVISORS)
    def qa_results(
        since: str = "7d",
        until: str | None = None,
        pack: str | None = None,
        failed: bool = False,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        start, end = _range(since, until)
        rows = store.list_qa(start.isoformat(), end.isoformat(), pack, limit=limit)
        return [r for r in rows if r["passed"] is False] if failed else rows

    @router.get("/api/qa/{call_id}")
    @allow(SUPERVISORS)
    def scorecard(call_id: str, request: Request) -> dict[str, Any]:
        card = store.get_scorecard(call_id)
        if card is None:
            raise HTTPException(404, f"call {call_id!r} has no scorecard")
        try:
            audit(
                store,
                signed_in_principal(request),
                "viewed",
                "call",
                call_id,
                {"part": "scorecard"},
            )
        except StoreError as exc:
            raise HTTPException(503, "the audit log is unavailable: try again later") from exc
        return card

    return router


def _when(text: str) -> datetime:
    try:
        return parse_when(text)
    except VoicebotError as exc:
        raise HTTPException(422, str(exc)) from exc


def _range(since: str, until: str | None) -> tuple[datetime, datetime]:
    start = _when(since)
    end = _when(until) if until else datetime.now(start.tzinfo)
    if start >= end:
        raise HTTPException(
            422, f"since ({start.isoformat()}) must be before until ({end.isoformat()})"
        )
    return start, end


async def _events(board: LiveBoard, request: Request) -> AsyncIterator[str]:
    """The board and the recent alerts, then changes and new alerts as they come."""
    await board.refresh()
    yield sse("board", board.rows())
    yield sse("alerts", board.alerts())
    version, seen = board.version, board.alert_seq

    async def changes() -> list[str]:
        nonlocal version, seen
        await board.refresh()
        events = [sse("alert", alert) for alert in reversed(board.alerts(seen))]
        seen = board.alert_seq
        if board.version != version:
            version = board.version
            events.append(sse("board", board.rows()))
        return events

    async for event in follow(request, board.poll_s, changes):
        yield event
