"""Browser calls: the ``/call`` page and its WebSocket ``/ws/call`` (see
``voicebot.transports.browser`` for the protocol).

Behind sign-in by default: staff try the bot from the page, and the caller ID they type is
used as a phone line's would be. ``--public-call`` opens both to anyone; each client
address may then start only a few calls a minute, and the caller ID the page sends is not
used to identify anyone (the dialog asks for the number, as for a withheld one).
"""

from pathlib import Path

from fastapi import APIRouter, WebSocket

from voicebot.server.access import Access, add_page, allow, client_key, principal, public, signed_in
from voicebot.server.limits import wait_text
from voicebot.server.lines import socket_writers
from voicebot.server.state import ServerState
from voicebot.transports.browser import BrowserLine

STATIC = Path(__file__).parent / "static"
_PAGES = {"/call": "call.html", "/call.js": "call.js", "/call-worklet.js": "call-worklet.js"}


def browser_router(state: ServerState) -> APIRouter:
    router = APIRouter()
    access: Access = (
        public("--public-call: callers use the bot from the web, rate-limited per address")
        if state.config.public_call
        else signed_in("agent", page=True)
    )
    for path, name in _PAGES.items():
        add_page(router, path, STATIC / name, access)

    @router.websocket("/ws/call")
    @allow(access)
    async def call(ws: WebSocket) -> None:
        who = principal(ws)
        await ws.accept()
        wait = state.browser_calls.take(who.name if who else client_key(ws))
        if wait:
            await ws.close(1013, f"too many calls from this address: {wait_text(wait)}")
            return
        line = BrowserLine(**socket_writers(ws), **state.line_options("browser"))
        await state.serve(ws, line, "browser", observer=line.observe, signed=bool(who))

    return router
