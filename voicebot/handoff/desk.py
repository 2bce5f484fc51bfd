"""The agent desktop: a live handoff queue in the browser, served by ``voicebot serve``.

``GET /agent`` is the page; it follows ``GET /api/handoffs/stream`` (server-sent events)
so a new handoff card appears within a fraction of a second without a reload. Agents claim
a card (the database guarantees one winner) and close it with a disposition. A claimed
caller still on the line is answered through ``/desk/bridge/<handoff_id>``, the page's
softphone (``voicebot.handoff.bridge``); a caller who hung up while queued is "caller left",
and their card can no longer be claimed.

Everything here is for signed-in agents (or above). The agent who claims or closes is the
one signed in, never a name in the request. Opening the queue or a card, claiming and
closing are written to the audit log; the number of open event streams is capped.

The stream polls the store for rows whose ``updated_at`` moved: it works the same whether
the call ran in this process, in another ``voicebot serve`` or in a ``voicebot call`` that
shares the database, and costs one indexed query per open page every ``poll_s``.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from voicebot.auth import Principal, audit
from voicebot.errors import HandoffError
from voicebot.handoff.bridge import MAX_AGENT_CHUNK_BYTES, AgentLink, LiveQueue
from voicebot.server.access import add_page, allow, signed_in, signed_in_principal
from voicebot.server.limits import Budget
from voicebot.server.lines import socket_writers
from voicebot.server.streams import follow, open_stream, sse
from voicebot.store.store import DISPOSITIONS, Store, UnknownHandoffError
from voicebot.transports.browser import RATES

STATIC = Path(__file__).parent / "static"
AGENTS = signed_in("agent")


class CloseRequest(BaseModel):
    disposition: Literal[DISPOSITIONS]  # type: ignore[valid-type]


def card(row: dict[str, Any]) -> dict[str, Any]:
    """What the desktop shows of a handoff (the packet plus its queue state)."""
    packet = row["packet"]
    return {
        "handoff_id": row["handoff_id"],
        "call_id": row["call_id"],
        "caller_id": row["caller_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "status": row["status"],
        "agent": row["agent"],
        "disposition": row["disposition"],
        "reason": row["reason"],
        "explanation": packet.get("explanation", ""),
        "summary": row["summary"],
        "summary_source": row["summary_source"],
        "verification": packet.get("verification", {}),
        "slots": packet.get("slots", {}),
        "intents": packet.get("intents", []),
        "sentiment": packet.get("sentiment", {}),
        "transcript": packet.get("transcript", []),
        "recording": packet.get("recording"),
        "consent": packet.get("consent"),  # recording consent: state and time
        "queue": packet.get("queue"),  # the caller's wait: holding, answered, abandoned...
        "telephony": packet.get("telephony", {}),  # the carrier's ids (Twilio's CallSid)
        "transfer": packet.get("transfer"),  # where the caller was sent, and how it went
    }


def desk_router(
    store: Store,
    *,
    poll_s: float = 0.25,
    streams: Budget | None = None,
    queue: LiveQueue | None = None,
) -> APIRouter:
    """``streams``: how many event streams may be open at once (default: 64); ``queue``:
    the callers this process holds on the line (the softphone talks to them)."""
    router = APIRouter()
    streams = streams or Budget("event_streams", 64)
    add_page(router, "/agent", STATIC / "agent.html", signed_in("agent", page=True))
    add_page(router, "/agent.js", STATIC / "agent.js", AGENTS)

    @router.get("/api/handoffs")
    @allow(AGENTS)
    def list_handoffs(
        request: Request,
        status: Literal["queued", "claimed", "closed"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        audit(store, signed_in_principal(request), "viewed", "queue", status or "all")
        return [card(row) for row in store.list_handoffs(status, limit=limit)]

    @router.get("/api/handoffs/stream")
    @allow(AGENTS)
    async def stream(request: Request) -> StreamingResponse:
        who = signed_in_principal(request)
        return await open_stream(
            streams,
            "desktops are following the queue",
            _events(store, request, poll_s),
            lambda: asyncio.to_thread(audit, store, who, "viewed", "queue", "stream"),
        )

    @router.get("/api/handoffs/{handoff_id}")
    @allow(AGENTS)
    def get_handoff(handoff_id: str, request: Request) -> dict[str, Any]:
        row = _get(store, handoff_id)
        _audit(store, signed_in_principal(request), "viewed", row)
        return card(row)

    @router.post("/api/handoffs/{handoff_id}/claim")
    @allow(AGENTS)
    def claim(handoff_id: str, request: Request) -> dict[str, Any]:
        who = signed_in_principal(request)
        row = _act(store.claim, handoff_id, who.name)
        _audit(store, who, "claimed", row)
        return card(row)

    @router.post("/api/handoffs/{handoff_id}/close")
    @allow(AGENTS)
    async def close(handoff_id: str, body: CloseRequest, request: Request) -> dict[str, Any]:
        """Close with a disposition; a caller still talking to this agent is hung up on."""
        who = signed_in_principal(request)
        row = await asyncio.to_thread(
            _act, store.close_handoff, handoff_id, who.name, body.disposition
        )
        await asyncio.to_thread(
            _audit, store, who, "closed", row, {"disposition": body.disposition}
        )
        held = queue.live(handoff_id) if queue is not None else None
        if held is not None:
            held.hang_up()  # the agent is done with this caller
        return card(row)

    @router.websocket("/desk/bridge/{handoff_id}")
    @allow(AGENTS)
    async def bridge(ws: WebSocket, handoff_id: str) -> None:
        """The softphone: the caller's voice and the live transcript to the agent who
        claimed the handoff, their microphone into the call (``voicebot.handoff.bridge``)."""
        who = signed_in_principal(ws)
        await ws.accept()
        try:
            row = await asyncio.to_thread(store.get_handoff, handoff_id)
        except UnknownHandoffError as exc:
            await ws.close(1008, str(exc))
            return
        held = queue.live(handoff_id) if queue is not None else None
        if row["status"] != "claimed" or row["agent"] != who.name:
            await ws.close(1008, "claim the handoff first")
            return
        if held is None or held.agent is not None:
            await ws.close(1008, _not_here(row, queue) if held is None else "already connected")
            return
        await asyncio.to_thread(_audit, store, who, "answered", row)
        link = AgentLink(who.name, **socket_writers(ws))
        held.connect(link)
        pump = asyncio.create_task(link.pump())
        reader = asyncio.create_task(_agent_reader(ws, link))
        ended = asyncio.create_task(held.done.wait())
        try:
            await asyncio.wait({reader, ended, pump}, return_when="FIRST_COMPLETED")
        finally:
            link.gone.set()
            for task in (reader, ended):
                task.cancel()
            await asyncio.sleep(0)
            await link.flush()
            pump.cancel()
        reason = held.end_reason if held.done.is_set() else "agent left"
        with contextlib.suppress(RuntimeError, ConnectionError, WebSocketDisconnect):
            await ws.close(1000, reason)  # the agent may be gone already

    return router


def _not_here(row: dict[str, Any], queue: LiveQueue | None) -> str:
    """Why this worker cannot bridge a claimed handoff's caller: another worker holds them
    (the balancer routes ``?worker=NAME`` there), or nobody does any more."""
    holder = (row["packet"].get("queue") or {}).get("worker")
    if holder is not None and (queue is None or holder != queue.worker):
        return f"the caller is on worker {holder}: connect with ?worker={holder}"
    return "the caller is no longer on the line"


async def _agent_reader(ws: WebSocket, link: AgentLink) -> None:
    """The agent's side: ``{"type": "start", "sampleRate": N}``, PCM16 microphone frames,
    ``{"type": "hangup"}`` (ends the call). Bad input closes the softphone, not the call."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data, text = message.get("bytes"), message.get("text")
        if data is not None:
            if len(data) % 2 or len(data) > MAX_AGENT_CHUNK_BYTES:
                return
            link.put_audio(np.frombuffer(data, dtype="<i2").astype(np.int16))
            continue
        try:
            event = json.loads(text or "")
        except ValueError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "start" and event.get("sampleRate") in RATES:
            link.set_rate(int(event["sampleRate"]))
        elif kind == "hangup":
            link.hang_up()
            return
        else:
            return


def _audit(
    store: Store, who: Principal, action: Any, row: dict[str, Any], detail: dict | None = None
) -> None:
    audit(store, who, action, "handoff", row["handoff_id"], detail, call_id=row["call_id"])


def _get(store: Store, handoff_id: str) -> dict[str, Any]:
    try:
        return store.get_handoff(handoff_id)
    except UnknownHandoffError as exc:
        raise HTTPException(404, str(exc)) from exc


def _act(action: Any, handoff_id: str, *args: str) -> dict[str, Any]:
    try:
        return action(handoff_id, *args)
    except UnknownHandoffError as exc:
        raise HTTPException(404, str(exc)) from exc
    except HandoffError as exc:
        raise HTTPException(409, str(exc)) from exc


async def _events(store: Store, request: Request, poll_s: float) -> AsyncIterator[str]:
    """The open queue first, then every change as it happens."""
    rows = await asyncio.to_thread(store.list_handoffs, None, limit=200)
    since = max((r["updated_at"] for r in rows), default=0.0)
    yield sse("snapshot", [card(r) for r in rows if r["status"] != "closed"])

    async def changes() -> list[str]:
        nonlocal since
        changed = await asyncio.to_thread(store.list_handoffs, None, since=since)
        events = []
        for row in sorted(changed, key=lambda r: r["updated_at"]):
            since = max(since, row["updated_at"])
            events.append(sse("handoff", card(row)))
        return events

    async for event in follow(request, poll_s, changes):
        yield event
