"""The agent desktop: a live handoff queue in the browser, served by ``voicebot serve``.

``GET /agent`` is the page; it follows ``GET /api/handoffs/stream`` (server-sent events)
so a new handoff card appears within a fraction of a second without a reload. Agents claim
a card (the database guarantees one winner) and close it with a disposition.

The stream polls the store for rows whose ``updated_at`` moved: it works the same whether
the call ran in this process, in another ``voicebot serve`` or in a ``voicebot call`` that
shares the database, and costs one indexed query per open page every ``poll_s``.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from voicebot.errors import HandoffError
from voicebot.store.store import DISPOSITIONS, Store, UnknownHandoffError

STATIC = Path(__file__).parent / "static"
_KEEPALIVE_S = 15.0


class ClaimRequest(BaseModel):
    agent: str = Field(min_length=1, max_length=128)


class CloseRequest(BaseModel):
    agent: str = Field(min_length=1, max_length=128)
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
    }


def desk_router(store: Store, *, poll_s: float = 0.25) -> APIRouter:
    router = APIRouter()

    @router.get("/agent", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "agent.html", media_type="text/html")

    @router.get("/api/handoffs")
    def list_handoffs(
        status: Literal["queued", "claimed", "closed"] | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        return [card(row) for row in store.list_handoffs(status, limit=limit)]

    @router.get("/api/handoffs/stream")
    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(
            _events(store, request, poll_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/api/handoffs/{handoff_id}")
    def get_handoff(handoff_id: str) -> dict[str, Any]:
        return card(_get(store, handoff_id))

    @router.post("/api/handoffs/{handoff_id}/claim")
    def claim(handoff_id: str, body: ClaimRequest) -> dict[str, Any]:
        return card(_act(store.claim, handoff_id, body.agent))

    @router.post("/api/handoffs/{handoff_id}/close")
    def close(handoff_id: str, body: CloseRequest) -> dict[str, Any]:
        return card(_act(store.close_handoff, handoff_id, body.agent, body.disposition))

    return router


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
    open_cards = [card(r) for r in rows if r["status"] != "closed"]
    yield _sse("snapshot", open_cards)
    quiet = 0.0
    while not await request.is_disconnected():
        await asyncio.sleep(poll_s)
        changed = await asyncio.to_thread(store.list_handoffs, None, since=since)
        for row in sorted(changed, key=lambda r: r["updated_at"]):
            since = max(since, row["updated_at"])
            yield _sse("handoff", card(row))
        quiet = 0.0 if changed else quiet + poll_s
        if quiet >= _KEEPALIVE_S:
            quiet = 0.0
            yield ": keepalive\n\n"  # proxies close idle streams


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
