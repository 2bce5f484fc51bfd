"""Runs one call over a WebSocket line, whatever its protocol (Twilio, browser).

The socket is read by its own task from the moment it is accepted, so protocol errors,
hang-ups and Twilio's mark echoes are seen even while the call is busy. The call starts on
the peer's ``start``; without a free call slot it is refused (``refuse`` lets the protocol
say so, e.g. a spoken apology). Whatever happens, the call is finalized (its record
persisted by the sinks) and the peer gets a close code and reason.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from voicebot.audio.recorder import StereoRecorder
from voicebot.errors import LineProtocolError
from voicebot.pipeline.bot import Bot
from voicebot.pipeline.record import CallRecord, RecordSink
from voicebot.pipeline.session import Observer
from voicebot.server import metrics
from voicebot.server.calls import CallRegistry, CallSlot
from voicebot.server.limits import Budget
from voicebot.transports.line import LiveLine

log = logging.getLogger(__name__)

_REASON_BYTES = 123  # RFC 6455 limit on a close reason


def socket_writers(ws: WebSocket) -> dict[str, Callable]:
    """``send_text``/``send_bytes`` that raise ``ConnectionError`` once the peer is gone,
    which is what lines expect (they know nothing of Starlette)."""

    def guard(send: Callable) -> Callable:
        async def write(data: object) -> None:
            if ws.application_state != WebSocketState.CONNECTED:
                raise ConnectionError("socket closed")
            try:
                await send(data)
            except (WebSocketDisconnect, RuntimeError) as exc:
                raise ConnectionError(str(exc)) from exc

        return write

    return {"send_text": guard(ws.send_text), "send_bytes": guard(ws.send_bytes)}


async def _read(ws: WebSocket, line: LiveLine, started: asyncio.Event, transport: str) -> None:
    while line.hangup is None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            line.end(1000, "client disconnected")
            return
        try:
            line.handle(message.get("text"), message.get("bytes"))
        except LineProtocolError as exc:
            metrics.PROTOCOL_ERRORS.labels(transport, str(exc.code)).inc()
            log.info("%s line closed: %s (%d)", transport, exc.reason, exc.code)
            line.end(exc.code, exc.reason)
            return
        except Exception:  # a parser bug must still end this call cleanly, and only it
            log.exception("%s line: failed on a message", transport)
            line.end(1011, "internal error")
            return
        if line.started:
            started.set()


async def run_line(
    ws: WebSocket,
    line: LiveLine,
    *,
    bot: Bot,
    calls: CallRegistry,
    transport: str,
    start_timeout_s: float,
    refuse: Callable[[], Awaitable[None]] | None = None,
    finish: Callable[[], Awaitable[object]] | None = None,
    observer: Observer | None = None,
    recordings_dir: Path | None = None,
    waiting: Budget | None = None,
    trust_caller_id: bool,
    after: Callable[[LiveLine, CallRecord, list[RecordSink]], Awaitable[None]] | None = None,
) -> CallRecord | None:
    """Serve one accepted socket until the call ends; returns the record (None: no call).

    ``waiting`` caps the sockets that have not said ``start`` yet (beyond it: 1013).
    ``trust_caller_id``: whether the caller ID the peer sends may identify the caller; an
    untrusted one (an unsigned stream, an anonymous browser) is treated as withheld, so the
    dialog asks for the number like for any withheld caller ID. ``after``: what happens to
    the line once the bot is done (a handed-off caller holds for an agent)."""
    give_back = waiting.take() if waiting is not None else lambda: None
    if give_back is None:
        await _close(ws, 1013, "too many connections waiting to start a call: try later")
        return None
    started = asyncio.Event()
    reader = asyncio.create_task(_read(ws, line, started, transport))
    record: CallRecord | None = None
    code, reason = 1000, "call ended"
    try:
        pending = asyncio.create_task(started.wait())
        await asyncio.wait(
            {reader, pending}, timeout=start_timeout_s, return_when="FIRST_COMPLETED"
        )
        pending.cancel()
        give_back()
        if not started.is_set():
            line.end(1008, f'no "start" within {start_timeout_s:g} s')
        elif (slot := calls.reserve()) is None:
            metrics.CALLS_REFUSED.labels(transport).inc()
            if refuse is not None:
                await refuse()
            code, reason = 1013, f"at capacity: {calls.max_calls} calls in progress, try later"
        else:
            if not trust_caller_id and line.caller_id:
                log.info("%s caller ID not used to identify the caller: unsigned", transport)
                line.caller_id = None
            record = await call_on_line(
                line,
                bot,
                calls,
                slot,
                transport,
                observer=observer,
                recordings_dir=recordings_dir,
                after=(lambda r, s: after(line, r, s)) if after is not None else None,
            )
            reason = f"call ended by {record.ended_by}"
            if line.hangup is None and finish is not None:
                await finish()  # e.g. let the goodbye play out before hanging up
    except Exception:
        log.exception("%s call failed", transport)
        code, reason = 1011, "internal error"
    finally:
        give_back()
        reader.cancel()
        if line.hangup is not None and code != 1011:
            code, reason = line.hangup.code, line.hangup.reason
        await _close(ws, code, reason)
    return record


async def call_on_line(
    line: LiveLine,
    bot: Bot,
    calls: CallRegistry,
    slot: CallSlot,
    transport: str,
    *,
    observer: Observer | None = None,
    recordings_dir: Path | None = None,
    after: Callable[[CallRecord, list[RecordSink]], Awaitable[None]] | None = None,
) -> CallRecord:
    """Run the bot's call on ``line`` in ``slot`` (released at the end, whatever happens).
    ``after`` runs once the bot is done but before the slot is released, with the record's
    sinks: what happens to the line next (a SIP transfer) is recorded on the same call."""
    call_id = uuid.uuid4().hex[:12]
    if recordings_dir is not None:
        line.recorder = StereoRecorder(recordings_dir / f"{call_id}.wav")
    metrics.CALLS_ACTIVE.labels(transport).inc()

    def observe(kind: str, event: object) -> None:
        metrics.observe(kind, event)
        if observer is not None:
            observer(kind, event)

    record: CallRecord | None = None
    try:
        record = await bot.run_call(
            line,
            realtime=True,
            sinks=calls.sinks(slot),
            observer=observe,
            caller_id=line.caller_id,
            call_id=call_id,
            recording=str(line.recorder.path) if line.recorder else None,
        )
        if after is not None:
            await after(record, calls.sinks(slot))
        return record
    finally:
        if line.recorder is not None:
            line.recorder.close()
        metrics.CALLS_ACTIVE.labels(transport).dec()
        metrics.CALLS.labels(transport, record.ended_by if record else "error").inc()
        calls.release(slot)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, ConnectionError):  # peer gone
        await ws.close(code, reason.encode()[:_REASON_BYTES].decode(errors="ignore"))
