"""Browser calls: the ``/call`` page and its WebSocket ``/ws/call`` (see
``voicebot.transports.browser`` for the protocol)."""

from pathlib import Path

from fastapi import APIRouter, WebSocket
from fastapi.responses import FileResponse

from voicebot.server.lines import socket_writers
from voicebot.server.state import ServerState
from voicebot.transports.browser import BrowserLine

STATIC = Path(__file__).parent / "static"
_PAGES = {"/call": "call.html", "/call.js": "call.js", "/call-worklet.js": "call-worklet.js"}


def browser_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    def page(name: str):
        media_type = "text/html" if name.endswith(".html") else "text/javascript"

        def serve() -> FileResponse:
            return FileResponse(STATIC / name, media_type=media_type)

        return serve

    for path, name in _PAGES.items():
        router.add_api_route(path, page(name), methods=["GET"], include_in_schema=False)

    @router.websocket("/ws/call")
    async def call(ws: WebSocket) -> None:
        await ws.accept()
        line = BrowserLine(**socket_writers(ws), **state.line_options("browser"))
        await state.serve(ws, line, "browser", observer=line.observe)

    return router
