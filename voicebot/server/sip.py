"""SIP calls in the server: ``SipService`` runs the SIP user agent on the app's event loop
and serves each answered call like any other live line (call slot, metrics, recording,
the record's sinks), then decides where a handed-off caller goes.

Handoff: a blind transfer by REFER to ``--transfer-to`` (the agents' queue), the packet id
in ``X-Voicebot-Handoff``, when one is set; the outcome is kept on the call record's
``handoff`` and on the stored handoff (closed as ``transferred``, or left queued). Without a
REFER target, or when the REFER is refused or fails, a server with the agent desktop holds
the caller on the line for an agent (``voicebot.handoff.bridge``), as it does Twilio and
browser callers; without a desk the caller hears the fallback apology (an agent has the
packet and will call back) before the bot hangs up.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from voicebot.handoff.transfer import TransferSink
from voicebot.pipeline.record import CallRecord, RecordSink, Turn
from voicebot.server import metrics
from voicebot.server.calls import CallSlot
from voicebot.server.lines import call_on_line
from voicebot.server.state import ServerState
from voicebot.transports.sip import SipLine, SipSettings, SipUserAgent, TransferOutcome

log = logging.getLogger(__name__)

TRANSPORT = "sip"


class SipService:
    """``serving(state)`` is an app service (``create_app(services=...)``); ``agent`` is the
    running user agent (its ``address`` has the real port when listening on port 0)."""

    def __init__(self, settings: SipSettings, record_transfer: TransferSink | None = None) -> None:
        self.settings = settings
        self._record_transfer = record_transfer
        self.agent: SipUserAgent | None = None
        self._state: ServerState | None = None

    @asynccontextmanager
    async def serving(self, state: ServerState) -> AsyncIterator["SipService"]:
        self._state = state
        self.agent = SipUserAgent(
            self.settings,
            self._admit,
            line_options=lambda: state.line_options(TRANSPORT),
            on_ignored_rtp=metrics.RTP_IGNORED.inc,
            on_bad_input=lambda status: metrics.PROTOCOL_ERRORS.labels(
                TRANSPORT, str(status)
            ).inc(),
        )
        await self.agent.start()
        try:
            yield self
        finally:
            await self.agent.stop()

    def _admit(self, line: SipLine) -> Awaitable[None] | None:
        """A call slot for the new call (None: at capacity, the INVITE gets 486)."""
        assert self._state is not None
        slot = self._state.calls.reserve()
        if slot is None:
            metrics.CALLS_REFUSED.labels(TRANSPORT).inc()
            return None
        return self._serve(line, slot)

    async def _serve(self, line: SipLine, slot: CallSlot) -> None:
        state = self._state
        assert state is not None
        try:
            await call_on_line(
                line,
                state.bot,
                state.calls,
                slot,
                TRANSPORT,
                observer=state.desk_observer(desk=self.settings.transfer_to is None),
                recordings_dir=state.config.recordings_dir,
                after=lambda record, sinks: self._after_call(line, record, sinks),
            )
        except Exception:
            log.exception("SIP call %s failed", line.call_id)
        finally:
            await line.hang_up()
            log.info("SIP call %s over: %s", line.call_id, line.hangup)

    async def _after_call(self, line: SipLine, record: CallRecord, sinks: list[RecordSink]) -> None:
        if record.ended_by == "handoff" and record.handoff is not None:
            await self._hand_over(line, record, sinks)
            return
        line.detach()
        if line.hangup is None:
            await line.drain(self._drain_s())  # the goodbye's last packets

    async def _hand_over(self, line: SipLine, record: CallRecord, sinks: list[RecordSink]) -> None:
        """Where a handed-off caller goes: the queue by REFER, else the desk, else the
        apology (see the module docstring)."""
        assert record.handoff is not None and self._state is not None
        desk = self._state.queue
        target = self.settings.transfer_to
        if line.hangup is not None:
            return  # the caller hung up during the transfer message
        if target is None and desk is not None:
            await desk.hold(line, record, sinks)  # the line stays the call's: attached
            return
        line.detach()
        await line.drain(self._drain_s())  # "let me connect you" is heard in full first
        if target is None:
            outcome = TransferOutcome("", "not_configured", 0, "no --transfer-to queue")
        else:
            outcome = await line.refer(
                target, record.handoff["handoff_id"], self.settings.transfer_timeout_s
            )
        log.info("SIP call %s handoff: %s", line.call_id, outcome)
        metrics.TRANSFERS.labels(TRANSPORT, outcome.outcome).inc()
        record.handoff["transfer"] = outcome.as_dict()
        apology = None
        to_desk = not outcome.ok and line.hangup is None and desk is not None
        if not outcome.ok and line.hangup is None and desk is None:
            apology = await self._state.spoken(self.settings.fallback_message)
            start = record.duration_s  # the call clock stopped with the session: append
            record.turns.append(
                Turn(
                    role="bot",
                    text=self.settings.fallback_message,
                    start=start,
                    end=round(start + len(apology) / 16000, 3),
                    kind="farewell",
                )
            )
        for sink in sinks:
            sink.update(record)
        if self._record_transfer is not None:
            try:
                await asyncio.to_thread(
                    self._record_transfer, record.handoff["handoff_id"], outcome.as_dict()
                )
            except Exception:  # the call record has it; the store must not end the call
                log.exception(
                    "could not store the transfer of handoff %s", record.handoff["handoff_id"]
                )
        if to_desk:
            assert desk is not None
            line.attach()
            await desk.hold(line, record, sinks)
        elif apology is not None:
            await line.play(apology)
            await line.drain(len(apology) / 16000 + self._drain_s())

    def _drain_s(self) -> float:
        assert self._state is not None
        return self._state.config.drain_timeout_s
