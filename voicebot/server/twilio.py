"""Twilio: ``POST /twilio/voice`` (TwiML that connects the call to our media stream) and
the media stream itself, ``/twilio/media``.

With an auth token configured, both check ``X-Twilio-Signature`` (HMAC-SHA1 of the URL
Twilio requested plus the sorted form parameters, keyed with the token), so only Twilio
can start calls. Behind a proxy, ``public_url`` gives the URL Twilio sees.

Without a token the routes refuse every request (403, or close 1008 on the stream) unless
the server runs ``--insecure-twilio`` (a test line), which logs a warning at every start; the
caller ID of an unsigned stream (``customParameters.From``) is then not used to identify
anyone, since any client could have sent it.
"""

import base64
import hashlib
import hmac
import logging
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket

from voicebot.server import metrics
from voicebot.server.access import TWILIO, allow
from voicebot.server.limits import refused
from voicebot.server.lines import socket_writers
from voicebot.server.state import ServerState
from voicebot.transports.twilio import TwilioLine

log = logging.getLogger(__name__)


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's request signature: base64 HMAC-SHA1 over the URL and the sorted params."""
    data = url + "".join(key + value for key, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _public(state: ServerState, url: str, path: str, query: str) -> str:
    """The URL as Twilio requested it (``public_url`` when the server sits behind a proxy)."""
    base = state.config.public_url
    if not base:
        return url
    if path.startswith("/twilio/media"):
        base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base.rstrip("/") + path + (f"?{query}" if query else "")


NOT_SET_UP = "Twilio is not set up here: no auth token (set TWILIO_AUTH_TOKEN)"


def _check(state: ServerState, url: str, path: str, query: str, sig: str | None, params) -> str:
    """Why the request is refused ("" when it may go on)."""
    token = state.config.twilio_auth_token
    if not token:
        return "" if state.config.insecure_twilio else NOT_SET_UP
    expected = signature(token, _public(state, url, path, query), params)
    if sig is not None and hmac.compare_digest(expected, sig):
        return ""
    return "invalid X-Twilio-Signature"


def twiml_connect(stream_url: str, caller: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f"<Stream url={quoteattr(stream_url)}>"
        f'<Parameter name="From" value={quoteattr(caller)}/>'
        "</Stream></Connect></Response>"
    )


def twiml_busy(message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Say>{escape(message)}</Say><Hangup/></Response>"
    )


def twilio_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.post("/twilio/voice")
    @allow(TWILIO)
    async def voice(request: Request) -> Response:
        params = parse_qsl(
            (await request.body()).decode("utf-8", "replace"), keep_blank_values=True
        )
        url = request.url
        sig = request.headers.get("X-Twilio-Signature")
        if problem := _check(state, str(url), url.path, url.query, sig, params):
            refused("twilio_signature")
            raise HTTPException(403, problem)
        if state.calls.active >= state.calls.max_calls:
            metrics.CALLS_REFUSED.labels("twilio").inc()
            return Response(twiml_busy(state.config.busy_message), media_type="application/xml")
        if state.config.public_url:
            stream = _public(state, "", "/twilio/media", "")
        else:
            scheme = "wss" if url.scheme == "https" else "ws"
            stream = f"{scheme}://{url.netloc}/twilio/media"
        caller = dict(params).get("From", "")
        return Response(twiml_connect(stream, caller), media_type="application/xml")

    @router.websocket("/twilio/media")
    @allow(TWILIO)
    async def media(ws: WebSocket) -> None:
        url = ws.url
        sig = ws.headers.get("X-Twilio-Signature")
        if problem := _check(state, str(url), url.path, url.query, sig, []):
            refused("twilio_signature")
            await ws.close(1008, problem)
            return
        await ws.accept()
        line = TwilioLine(socket_writers(ws)["send_text"], **state.line_options("twilio"))

        async def apologize() -> None:
            audio = await state.busy_audio()
            await line.play(audio)
            await line.drain(len(audio) / 16000 + 5.0)

        await state.serve(
            ws,
            line,
            "twilio",
            refuse=apologize,
            finish=lambda: line.drain(state.config.drain_timeout_s),
            signed=bool(state.config.twilio_auth_token),
        )

    return router
