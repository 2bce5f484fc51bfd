"""``/healthz`` and the calls API: ``/api/calls``, ``/api/calls/{id}`` (transcript,
timings, intents) and ``/api/calls/{id}/recording``. Live calls come from memory; finished
ones from the history (a database query runs in a thread, never on the event loop)."""

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from voicebot.server.calls import CallRegistry


def api_router(calls: CallRegistry, recordings_dir: Path | None = None) -> APIRouter:
    """``recordings_dir``: the only folder recordings are served from (a record's path
    comes from the database, which must not become a way to read any file)."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "active_calls": calls.active, "max_calls": calls.max_calls}

    @router.get("/api/calls")
    async def list_calls(limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        live = calls.live_rows()
        ids = {row["call_id"] for row in live}
        finished = await asyncio.to_thread(calls.history.list_calls, limit)
        rows = live + [row | {"active": False} for row in finished if row["call_id"] not in ids]
        return rows[:limit]

    @router.get("/api/calls/{call_id}")
    async def get_call(call_id: str) -> dict[str, Any]:
        record = calls.live_call(call_id)
        if record is None:
            found = await asyncio.to_thread(calls.history.get_call, call_id)
            record = found | {"active": False} if found else None
        if record is None:
            raise HTTPException(404, f"no call {call_id!r}")
        return record

    @router.get("/api/calls/{call_id}/recording")
    async def get_recording(call_id: str) -> FileResponse:
        record = await get_call(call_id)
        if record.get("active"):
            raise HTTPException(409, f"call {call_id!r} is still in progress")
        path = Path(record.get("recording") or "")
        folder = recordings_dir.resolve() if recordings_dir else None
        if folder is None or path.resolve().parent != folder or not path.is_file():
            raise HTTPException(404, f"no recording of call {call_id!r} on this server")
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")

    return router
