"""Server-sent event streams that follow the database: the agent desktop's queue and the
supervisor's live board.

A stream polls (``follow``): every ``poll_s`` it asks for what changed, in a worker thread
when that means a query, so it shows what every worker sharing the database did. While it is
open it holds a place of the server's ``event_streams`` budget, given back however it ends
(the client leaves, signs out, or never read the first byte); it re-checks the viewer's
sign-in every ``RECHECK_S`` and sends a comment line when quiet, since proxies close idle
connections (HAProxy's ``timeout tunnel`` must be longer than ``KEEPALIVE_S``).
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse

from voicebot.server.limits import Budget

KEEPALIVE_S = 15.0
RECHECK_S = 30.0  # an open stream re-checks its sign-in this often (signed out: it ends)


def sse(event: str, data: Any) -> str:
    """One server-sent event of JSON data."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def open_stream(
    streams: Budget,
    what: str,
    events: AsyncIterator[str],
    before: Callable[[], Awaitable[object]] | None = None,
) -> StreamingResponse:
    """The streaming response of ``events``, once it has a place in ``streams`` (else 503:
    "``limit`` ``what`` already") and ``before`` (e.g. the audit entry) went through."""
    give_back = streams.take()
    if give_back is None:
        raise HTTPException(503, f"{streams.limit} {what} already: try later")
    try:
        if before is not None:
            await before()
    except BaseException:
        give_back()
        raise
    return StreamingResponse(
        _Body(_giving_back(events, give_back), give_back),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def follow(
    request: Request, poll_s: float, poll: Callable[[], Awaitable[list[str]]]
) -> AsyncIterator[str]:
    """What ``poll`` returns every ``poll_s``, while the client stays and is signed in."""
    quiet = unchecked = 0.0
    while not await request.is_disconnected():
        await asyncio.sleep(poll_s)
        unchecked += poll_s
        if unchecked >= RECHECK_S:
            unchecked = 0.0
            if not await request.state.gate.still_signed_in(request):
                return
        chunks = await poll()
        for chunk in chunks:
            yield chunk
        quiet = 0.0 if chunks else quiet + poll_s
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keepalive\n\n"


async def _giving_back(
    events: AsyncIterator[str], give_back: Callable[[], None]
) -> AsyncIterator[str]:
    try:
        async for chunk in events:
            yield chunk
    finally:
        give_back()


class _Body:
    """A stream's body. Its generator gives the stream's place back when it ends; if it
    never starts (the client left before the first byte), dropping the body does."""

    def __init__(self, events: AsyncIterator[str], give_back: Callable[[], None]) -> None:
        self._events = events
        self._give_back = give_back

    def __aiter__(self) -> "_Body":
        return self

    async def __anext__(self) -> str:
        return await self._events.__anext__()

    def __del__(self) -> None:
        self._give_back()
