"""Twilio: ``POST /twilio/voice`` (TwiML that connects the call to our media stream), the
media stream itself (``/twilio/media``), and what follows it.

A call's flow: the voice webhook answers ``<Connect action="/twilio/continue"><Stream>``.
When the bot's part ends, the bot closes the stream and Twilio asks ``/twilio/continue``
for the next verb: a handed-off caller is sent on to the agents' line (``--transfer-to``:
``<Dial><Number>``, ``<Dial><Sip>`` with the packet id as ``X-Voicebot-Handoff``, or
``<Enqueue>`` for a queue name) with ``action="/twilio/dial?handoff=ID"``; any other call is
hung up. Twilio reports there how it went (``DialCallStatus``, ``QueueResult``), which is
recorded on the call and the stored handoff; a failed transfer leaves the handoff queued
and the caller hears that an agent will call back. The CallSid and AccountSid are in the
record and the packet (``telephony``), so the answering desk can match the call.

With an auth token configured, every route checks ``X-Twilio-Signature`` (HMAC-SHA1 of the URL
Twilio requested plus the sorted form parameters, keyed with the token), so only Twilio
can start calls. Behind a proxy, ``public_url`` gives the URL Twilio sees.

Without a token the routes refuse every request (403, or close 1008 on the stream) unless
the server runs ``--insecure-twilio`` (a test line), which logs a warning at every start; the
caller ID of an unsigned stream (``customParameters.From``) is then not used to identify
anyone, since any client could have sent it.
"""

import asyncio
import base64
import hashlib
import hmac
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, HTTPException, Request, Response, WebSocket

from voicebot.handoff.transfer import FALLBACK_MESSAGE, TransferSink, TransferTarget
from voicebot.pipeline.record import CallRecord, RecordSink
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


def _twiml(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


def twiml_connect(stream_url: str, caller: str, action: str | None = None) -> str:
    """The call's first TwiML: its audio to our stream; when the stream ends, Twilio asks
    ``action`` (our ``/twilio/continue``) what comes next."""
    attrs = f" action={quoteattr(action)}" if action else ""
    return _twiml(
        f"<Connect{attrs}><Stream url={quoteattr(stream_url)}>"
        f'<Parameter name="From" value={quoteattr(caller)}/>'
        "</Stream></Connect>"
    )


def twiml_busy(message: str) -> str:
    """Say ``message`` and hang up (capacity, or a transfer that could not be made)."""
    return _twiml(f"<Say>{escape(message)}</Say><Hangup/>")


def twiml_transfer(target: TransferTarget, handoff_id: str, action: str) -> str:
    """The caller on to the agents: a number or SIP URI is dialed (the SIP URI carrying
    the packet id as ``X-Voicebot-Handoff``), a queue name enqueues the caller (Twilio's
    ``<Dial><Queue>`` is the agent's side, taking the next caller out of a queue). Either
    way Twilio requests ``action`` with the outcome."""
    act = quoteattr(action)
    if target.kind == "queue":
        return _twiml(f"<Enqueue action={act}>{escape(target.address)}</Enqueue>")
    noun = (
        f"<Sip>{escape(target.with_handoff(handoff_id))}</Sip>"
        if target.kind == "sip"
        else f"<Number>{escape(target.address)}</Number>"
    )
    return _twiml(f"<Dial action={act}>{noun}</Dial>")


HANG_UP = _twiml("<Hangup/>")

# Twilio's word for how the dial (DialCallStatus) or the queue (QueueResult) ended, in ours.
_DIALED = {
    "completed": "the agent answered",
    "answered": "the agent answered",
    "busy": "the agents' line was busy",
    "no-answer": "nobody answered",
    "failed": "the call to the agents could not be placed",
    "canceled": "the call to the agents was canceled",
}
_QUEUED = {
    "bridged": "an agent took the call from the queue",
    "bridging-in-process": "an agent was taking the call from the queue",
    "hangup": "the caller hung up in the queue",
    "queue-full": "the queue was full",
    "leave": "the call left the queue",
    "redirected": "the call was redirected out of the queue",
    "redirected-from": "the call was redirected out of the queue",
    "error": "the queue failed",
    "system-error": "the queue failed",
}
_ANSWERED = frozenset({"completed", "answered", "bridged", "bridging-in-process"})


def transfer_outcome(target: TransferTarget, params: dict[str, str]) -> dict[str, Any]:
    """The transfer as recorded on the handoff, from the action callback's parameters."""
    queued = target.kind == "queue"
    status = params.get("QueueResult" if queued else "DialCallStatus", "")
    known = _QUEUED if queued else _DIALED
    outcome = {
        "via": "twilio_enqueue" if queued else "twilio_dial",
        "target": target.address,
        "outcome": "transferred" if status in _ANSWERED else "failed",
        "status": status,
        "reason": known.get(status, f"Twilio reported {status[:40]!r}" if status else "no status"),
    }
    if params.get("DialCallSid"):
        outcome["dial_call_sid"] = params["DialCallSid"]
    seconds = params.get("QueueTime" if queued else "DialCallDuration", "")
    if seconds.isdigit():
        outcome["duration_s"] = int(seconds)
    return outcome


class Continuations:
    """Calls whose media stream has ended, by CallSid (and handoff id), until Twilio has
    asked what follows and said how the transfer ended. In memory: the continuation of a
    call must reach the process that served its stream (route by CallSid)."""

    def __init__(self, keep: int = 1000) -> None:
        self._keep = keep
        self._calls: OrderedDict[str, CallRecord] = OrderedDict()
        self._handoffs: dict[str, str] = {}

    def add(self, call_sid: str, record: CallRecord) -> None:
        self._calls[call_sid] = record
        if record.handoff is not None:
            self._handoffs[record.handoff["handoff_id"]] = call_sid
        while len(self._calls) > self._keep:
            self.pop(next(iter(self._calls)))

    def get(self, call_sid: str) -> CallRecord | None:
        return self._calls.get(call_sid)

    def by_handoff(self, handoff_id: str) -> CallRecord | None:
        call_sid = self._handoffs.get(handoff_id)
        return self._calls.get(call_sid) if call_sid else None

    def pop(self, call_sid: str) -> None:
        record = self._calls.pop(call_sid, None)
        if record is not None and record.handoff is not None:
            self._handoffs.pop(record.handoff["handoff_id"], None)


def twilio_router(state: ServerState, record_transfer: TransferSink | None = None) -> APIRouter:
    """``record_transfer``: where a transfer's outcome is kept on the stored handoff
    (``Store.record_transfer``); the call record gets it either way."""
    router = APIRouter()
    ended = Continuations()

    async def signed_form(request: Request) -> dict[str, str]:
        """The form Twilio posted, once its signature holds (else 403)."""
        params = parse_qsl(
            (await request.body()).decode("utf-8", "replace"), keep_blank_values=True
        )
        url = request.url
        sig = request.headers.get("X-Twilio-Signature")
        if problem := _check(state, str(url), url.path, url.query, sig, params):
            refused("twilio_signature")
            raise HTTPException(403, problem)
        return dict(params)

    def our_url(request: Request, path: str) -> str:
        """An absolute URL of ours as Twilio reaches it (and will sign it)."""
        if state.config.public_url:
            return _public(state, "", path, "")
        return f"{request.url.scheme}://{request.url.netloc}{path}"

    async def keep(handoff_id: str, transfer: dict[str, Any], record: CallRecord | None) -> None:
        """The transfer on the call record and on the stored handoff; a store failure is
        logged (the record has it), never an error for Twilio, whose caller is waiting."""
        if record is not None and record.handoff is not None:
            record.handoff["transfer"] = transfer
            for sink in state.calls.sinks():
                sink.update(record)
        if transfer["outcome"] != "dialing":  # counted once, when it has ended
            metrics.TRANSFERS.labels("twilio", transfer["outcome"]).inc()
        if record_transfer is None:
            return
        try:
            await asyncio.to_thread(record_transfer, handoff_id, transfer)
        except Exception:
            log.exception("could not store the transfer of handoff %s", handoff_id)

    def xml(body: str) -> Response:
        return Response(body, media_type="application/xml")

    @router.post("/twilio/voice")
    @allow(TWILIO)
    async def voice(request: Request) -> Response:
        params = await signed_form(request)
        if state.calls.active >= state.calls.max_calls:
            metrics.CALLS_REFUSED.labels("twilio").inc()
            return xml(twiml_busy(state.config.busy_message))
        if state.config.public_url:
            stream = _public(state, "", "/twilio/media", "")
        else:
            scheme = "wss" if request.url.scheme == "https" else "ws"
            stream = f"{scheme}://{request.url.netloc}/twilio/media"
        caller = params.get("From", "")
        return xml(twiml_connect(stream, caller, our_url(request, "/twilio/continue")))

    @router.post("/twilio/continue")
    @allow(TWILIO)
    async def next_verb(request: Request) -> Response:
        """Twilio's request once our stream has ended (``<Connect action>``): a handed-off
        caller is dialed on to the agents; any other call is over, and so is one the desk
        held (``voicebot.handoff.bridge``: an agent talked to them, they left a callback)."""
        params = await signed_form(request)
        call_sid = params.get("CallSid", "")
        record = ended.get(call_sid)
        target = state.config.transfer_to
        over = params.get("CallStatus") == "completed"
        if record is None or record.handoff is None or over or "queue" in record.handoff:
            ended.pop(call_sid)
            return xml(HANG_UP)
        handoff_id = record.handoff["handoff_id"]
        if target is None:
            ended.pop(call_sid)
            none = {"via": "twilio_dial", "target": "", "outcome": "not_configured"}
            await keep(handoff_id, none | {"status": "", "reason": "no --transfer-to"}, record)
            return xml(twiml_busy(FALLBACK_MESSAGE))
        dialing = {
            "via": "twilio_enqueue" if target.kind == "queue" else "twilio_dial",
            "target": target.address,
            "outcome": "dialing",
            "status": "",
            "reason": "Twilio is sending the caller on",
        }
        await keep(handoff_id, dialing, record)
        action = our_url(request, "/twilio/dial") + "?" + urlencode({"handoff": handoff_id})
        log.info("Twilio call %s: handoff %s on to %s", call_sid, handoff_id, target)
        return xml(twiml_transfer(target, handoff_id, action))

    @router.post("/twilio/dial")
    @allow(TWILIO)
    async def dialed(request: Request) -> Response:
        """The ``<Dial>`` (or ``<Enqueue>``) action callback: how the transfer ended. A
        failed one leaves the handoff queued, and the caller hears that an agent will call
        back instead of silence."""
        params = await signed_form(request)  # the handoff id is in the signed URL
        handoff = request.query_params.get("handoff", "")
        record = ended.by_handoff(handoff)
        target = state.config.transfer_to
        if target is None:
            log.warning("Twilio reported a transfer of unknown handoff %s", handoff)
            return xml(HANG_UP)
        outcome = transfer_outcome(target, params)
        caller_left = params.get("CallStatus") == "completed"
        apologize = outcome["outcome"] != "transferred" and not caller_left
        await keep(handoff, outcome | {"apology": apologize}, record)
        ended.pop(params.get("CallSid", ""))
        return xml(twiml_busy(FALLBACK_MESSAGE) if apologize else HANG_UP)

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

        async def after(record: CallRecord, _sinks: list[RecordSink]) -> None:
            """Before the stream closes, so the continuation Twilio asks for finds it."""
            if line.call_sid:
                ended.add(line.call_sid, record)

        await state.serve(
            ws,
            line,
            "twilio",
            refuse=apologize,
            finish=lambda: line.drain(state.config.drain_timeout_s),
            signed=bool(state.config.twilio_auth_token),
            after=after,
        )

    return router
