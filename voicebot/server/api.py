"""``/healthz``, ``/readyz`` and the calls API: ``/api/calls``, ``/api/calls/{id}``
(transcript, timings, intents) and ``/api/calls/{id}/recording``. This process's live calls
come from memory; the others from the history (a database query runs in a thread, never on
the event loop), which with a shared database holds the calls of every worker: a call not
ended there is in progress on another worker.

``/healthz`` says the process is up (liveness); ``/readyz`` that it can serve (readiness:
its database answers), for load balancers to send traffic only where it can be served.

Supervisors (and admins) see every call; an agent sees only the calls handed to the agents
(the desktop links their recordings). Opening a call and fetching its recording are written
to the audit log before anything is sent; if the log cannot take it, nothing is sent.
"""

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from voicebot.auth import AuditAction, Principal, audit
from voicebot.errors import StoreError
from voicebot.server.access import allow, public, signed_in, signed_in_principal
from voicebot.server.calls import CallRegistry
from voicebot.store.store import Store

SUPERVISORS = signed_in("supervisor")


def api_router(
    calls: CallRegistry, recordings_dir: Path | None = None, store: Store | None = None
) -> APIRouter:
    """``recordings_dir``: the only folder recordings are served from (a record's path
    comes from the database, which must not become a way to read any file). ``store``:
    where views are audited and handoffs looked up (None: no database, so no sign-in)."""
    router = APIRouter()

    @router.get("/healthz")
    @allow(public("liveness probe for load balancers; says only how busy the server is"))
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "active_calls": calls.active, "max_calls": calls.max_calls}

    @router.get("/readyz")
    @allow(public("readiness probe for load balancers; says only whether this server can serve"))
    async def readyz() -> JSONResponse:
        try:
            if store is not None:
                await asyncio.to_thread(store.ping)
        except SQLAlchemyError:
            return JSONResponse({"status": "unavailable", "why": "database unavailable"}, 503)
        return JSONResponse({"status": "ready", "active_calls": calls.active})

    @router.get("/api/calls")
    @allow(SUPERVISORS)
    async def list_calls(limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        live = calls.live_rows()
        ids = {row["call_id"] for row in live}
        finished = await asyncio.to_thread(calls.history.list_calls, limit)
        rows = live + [
            row | {"active": row["ended_by"] is None}  # not ended: live on another worker
            for row in finished
            if row["call_id"] not in ids
        ]
        return rows[:limit]

    async def opened(request: Request, call_id: str, action: AuditAction) -> dict[str, Any]:
        """The call, once the viewer may see it and the view is in the audit log."""
        who = signed_in_principal(request)
        if not await asyncio.to_thread(_may_open, store, who, call_id):
            raise HTTPException(404, f"no call {call_id!r}")  # the same as a missing one
        record = calls.live_call(call_id)
        if record is None:
            found = await asyncio.to_thread(calls.history.get_call, call_id)
            record = found | {"active": False} if found else None
        if record is None:
            raise HTTPException(404, f"no call {call_id!r}")
        kind = "recording" if action == "listened" else "call"
        try:
            await asyncio.to_thread(audit, store, who, action, kind, call_id)  # type: ignore[arg-type]
        except StoreError as exc:
            raise HTTPException(503, "the audit log is unavailable: try again later") from exc
        return record

    @router.get("/api/calls/{call_id}")
    @allow(signed_in("agent"))
    async def get_call(call_id: str, request: Request) -> dict[str, Any]:
        return await opened(request, call_id, "viewed")

    @router.get("/api/calls/{call_id}/recording")
    @allow(signed_in("agent"))
    async def get_recording(call_id: str, request: Request) -> FileResponse:
        record = await opened(request, call_id, "listened")
        if record.get("active"):
            raise HTTPException(409, f"call {call_id!r} is still in progress")
        path = Path(record.get("recording") or "")
        folder = recordings_dir.resolve() if recordings_dir else None
        if folder is None or path.resolve().parent != folder or not path.is_file():
            raise HTTPException(404, f"no recording of call {call_id!r} on this server")
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")

    return router


def _may_open(store: Store | None, who: Principal, call_id: str) -> bool:
    if who.may(SUPERVISORS.roles):
        return True
    return store is not None and store.has_handoff(call_id)
