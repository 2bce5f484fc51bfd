"""Runs one call over a WebSocket line, whatever its protocol (Twilio, browser).

The socket is read by its own task from the moment it is accepted, so protocol errors,
hang-ups and Twilio's mark echoes are seen even while the call is busy. That reader takes
its turn with every other call's: a few messages per 20 ms tick, then it waits
(``limits.ReadBudget``), and a peer that sends more than a live line ever does is closed
(1008). The call starts on the peer's ``start``; a peer that is not signed (an unchecked
Twilio stream, an anonymous browser) must first stream a little audio at real-time pace,
so junk that only says ``start`` never holds a call slot. Without a free slot the call is
refused (``refuse`` lets the protocol say so, e.g. a spoken apology). Whatever happens, the
call is finalized (its record persisted by the sinks, ``ended_by`` saying whose doing the
end was) and the peer gets a close code and a reason that names the problem.
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
from voicebot.server import memory, metrics
from voicebot.server.calls import CallRegistry, CallSlot
from voicebot.server.limits import Limits, PeerLog, ReadBudget, WaitingRoom
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


async def _read(
    ws: WebSocket,
    line: LiveLine,
    started: asyncio.Event,
    transport: str,
    budget: ReadBudget,
    peers: PeerLog,
) -> None:
    while line.hangup is None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            line.end(1000, "client disconnected")
            return
        try:
            if too_much := budget.spend():
                raise LineProtocolError(1008, too_much)
            line.handle(message.get("text"), message.get("bytes"))
        except LineProtocolError as exc:
            metrics.PROTOCOL_ERRORS.labels(transport, str(exc.code)).inc()
            peers.note(
                f"{transport}_closed_{exc.code}",
                f"{transport} line closed: {exc.reason} ({exc.code})",
                logging.INFO,
            )
            line.end(exc.code, exc.reason, by="protocol")
            return
        except Exception:  # a parser bug must still end this call cleanly, and only it
            log.exception("%s line: failed on a message", transport)
            line.end(1011, "internal error", by="error")
            return
        if line.started:
            started.set()
        await budget.pace()


async def _wait_for_call(
    line: LiveLine,
    reader: asyncio.Task,
    started: asyncio.Event,
    *,
    signed: bool,
    timeout_s: float,
    proof_s: float,
) -> str | None:
    """Wait (up to ``timeout_s``) until the peer behaves like a call: it said ``start``
    and, unless ``signed``, has streamed ``proof_s`` of audio at real-time pace. Returns
    what it failed to do, or None (ready, or the line ended: its own reason stands)."""

    async def ready() -> None:
        await started.wait()
        if not signed:
            await line.audio_for(proof_s)

    waiter = asyncio.create_task(ready())
    gone = asyncio.create_task(line.ended.wait())  # e.g. closed to make room for another
    try:
        await asyncio.wait({reader, waiter, gone}, timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()
        gone.cancel()
    if line.hangup is not None:
        return None
    if not started.is_set():
        return f'no "start" within {timeout_s:g} s'
    if not waiter.done() or waiter.cancelled():
        return (
            f"no caller audio within {timeout_s:g} s: an unsigned stream must send "
            f"{proof_s:g} s of audio in real time before its call starts"
        )
    return None


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
    waiting: WaitingRoom,
    limits: Limits,
    peers: PeerLog,
    signed: bool,
    after: Callable[[CallRecord, list[RecordSink]], Awaitable[None]] | None = None,
) -> CallRecord | None:
    """Serve one accepted socket until the call ends; returns the record (None: no call).

    ``waiting`` holds the sockets that are not in a call yet (when it is full, the one that
    waited longest is closed, 1013). ``signed``:
    the peer proved who it is (Twilio's signature, a signed-in user), so it takes a call
    slot on ``start`` and the caller ID it sends may identify the caller; an unsigned one
    must first stream audio in real time (``Limits.proof_of_audio_s``), and its caller ID
    is treated as withheld, so the dialog asks for the number like for any withheld one.
    ``after``: as for ``call_on_line``, before ``finish`` and the close."""
    evicted = "too many connections waiting to start a call: this one waited longest"
    give_back = waiting.enter(lambda: line.end(1013, evicted, by="protocol"))
    started = asyncio.Event()
    budget = ReadBudget(limits.line_messages, limits.line_reads_per_tick)
    reader = asyncio.create_task(_read(ws, line, started, transport, budget, peers))
    record: CallRecord | None = None
    code, reason = 1000, "call ended"
    try:
        problem = await _wait_for_call(
            line,
            reader,
            started,
            signed=signed,
            timeout_s=start_timeout_s,
            proof_s=limits.proof_of_audio_s,
        )
        give_back()
        if line.hangup is not None:
            pass  # the peer hung up or broke the protocol: its reason is the close's
        elif problem is not None:
            line.end(1008, problem, by="protocol")
        elif calls.closing:
            code, reason = 1012, "the server is shutting down: call again in a moment"
        elif (slot := calls.reserve()) is None:
            metrics.CALLS_REFUSED.labels(transport).inc()
            if refuse is not None:
                await refuse()
            code, reason = 1013, f"at capacity: {calls.max_calls} calls in progress, try later"
        else:
            if not signed and line.caller_id:
                log.info("%s caller ID not used to identify the caller: unsigned", transport)
                line.caller_id = None
            line.begin()
            record = await call_on_line(
                line,
                bot,
                calls,
                slot,
                transport,
                observer=observer,
                recordings_dir=recordings_dir,
                after=after,
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
        memory.reclaim_soon()  # a socket that never became a call leaves garbage too
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
    slot.line = line  # so that a shutdown can end it (CallRegistry.close)
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
            telephony=line.telephony,
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
        memory.reclaim_soon()  # what the call freed, back to the system


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, ConnectionError):  # peer gone
        await ws.close(code, reason.encode()[:_REASON_BYTES].decode(errors="ignore"))
