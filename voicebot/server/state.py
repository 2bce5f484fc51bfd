"""What the server's routes share: the bot (models loaded once), the settings, the calls."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import WebSocket

from voicebot.audio.apm import AudioCleanup
from voicebot.auth import SessionPolicy
from voicebot.handoff.bridge import LiveQueue
from voicebot.handoff.transfer import TransferTarget
from voicebot.pipeline.bot import Bot
from voicebot.pipeline.record import CallRecord, RecordSink
from voicebot.pipeline.session import Observer
from voicebot.server import metrics
from voicebot.server.calls import CallRegistry
from voicebot.server.limits import Budget, Limits, PeerLog, RateLimiter, WaitingRoom
from voicebot.server.lines import run_line
from voicebot.transports.line import LiveLine


@dataclass(frozen=True)
class ServerConfig:
    max_calls: int = 4  # beyond this a new call is refused (Twilio: spoken apology)
    transcripts_dir: Path | None = None  # also keep each call as DIR/<call_id>.json
    recordings_dir: Path | None = None  # record each call to DIR/<call_id>.wav (stereo)
    twilio_auth_token: str | None = None  # validate X-Twilio-Signature (else Twilio is off)
    insecure_twilio: bool = False  # without a token, take unsigned Twilio requests (tests)
    public_call: bool = False  # /call and /ws/call without sign-in (rate-limited)
    metrics_token: str | None = None  # a bearer token that may read /metrics only
    public_url: str | None = None  # e.g. https://bot.example.com behind a TLS proxy
    # This worker's name behind the balancer (its HAProxy ``server`` name): a held caller's
    # card carries it, so the agent's softphone is routed to the worker holding the caller.
    worker_name: str | None = None
    # The agents' line a handed-off Twilio caller is dialed to (``--transfer-to``, else the
    # pack's); None: the caller hears that an agent will call back.
    transfer_to: TransferTarget | None = None
    limits: Limits = field(default_factory=Limits)
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    cleanup: AudioCleanup = field(default_factory=AudioCleanup)
    busy_message: str = (
        "Sorry, all our lines are busy right now. Please call again in a few minutes. Goodbye."
    )
    start_timeout_s: float = 10.0  # a peer must say "start" this soon after connecting
    idle_timeout_s: float = 5.0  # no caller audio this long: the line is dead
    send_timeout_s: float = 2.0  # a peer that does not read this long is dropped
    drain_timeout_s: float = 10.0  # wait for the last words to play before hanging up


class ServerState:
    def __init__(self, bot: Bot, config: ServerConfig, calls: CallRegistry) -> None:
        self.bot = bot
        self.config = config
        self.calls = calls
        self._spoken: dict[str, np.ndarray] = {}
        limits = config.limits
        self.waiting = WaitingRoom(limits.waiting_sockets)
        self.event_streams = Budget("event_streams", limits.event_streams)
        self.browser_calls = RateLimiter("call_rate", limits.calls_per_client)
        self.peers = PeerLog(logging.getLogger("voicebot.peers"))
        self.queue: LiveQueue | None = None  # handed-off callers holding for the desk

    def holds(self, transport: str, record: CallRecord) -> bool:
        """Whether the desk holds this handed-off caller on the line for an agent."""
        handed_off = record.ended_by == "handoff" and record.handoff is not None
        return self._desk_takes(transport) and handed_off

    def _desk_takes(self, transport: str) -> bool:
        """Handed-off callers of ``transport`` hold for the desk: there is a desk, and no
        transfer target sends Twilio callers on (``/twilio/continue``)."""
        sent_on = transport == "twilio" and self.config.transfer_to is not None
        return self.queue is not None and not sent_on

    def desk_observer(self, desk: bool, outer: Observer | None = None) -> Observer:
        """A live call's session observer: ``outer``'s, and, when its handed-off caller will
        hold for the ``desk``, the first hold message prepared at the handoff decision."""

        def observe(kind: str, event: object) -> None:
            if desk and kind == "handoff" and self.queue is not None:
                assert isinstance(event, dict)
                self.queue.prepare(event["handoff_id"])
            if outer is not None:
                outer(kind, event)

        return observe

    def line_options(self, transport: str) -> dict[str, Any]:
        """What every new line of ``transport`` gets: timeouts, audio clean-up, metrics."""
        return {
            "idle_timeout_s": self.config.idle_timeout_s,
            "send_timeout_s": self.config.send_timeout_s,
            "processor": self.config.cleanup.processor(),
            "on_late": metrics.LATE_FRAMES.labels(transport).inc,
            "on_peer_error": self.peers.note,
        }

    async def serve(
        self,
        ws: WebSocket,
        line: LiveLine,
        transport: str,
        after: Callable[[CallRecord, list[RecordSink]], Awaitable[None]] | None = None,
        **options: Any,
    ) -> CallRecord | None:
        """Run one call on an accepted socket (see ``voicebot.server.lines.run_line``).
        Once the bot is done, a handed-off caller the desk takes holds on ``line`` for an
        agent; then ``after`` (the transport's own step, e.g. Twilio's continuation) runs,
        before the socket closes."""

        async def after_call(record: CallRecord, sinks: list[RecordSink]) -> None:
            if self.queue is not None and self.holds(transport, record):
                await self.queue.hold(line, record, sinks)
            if after is not None:
                await after(record, sinks)

        observer = self.desk_observer(self._desk_takes(transport), options.pop("observer", None))

        return await run_line(
            ws,
            line,
            bot=self.bot,
            calls=self.calls,
            transport=transport,
            start_timeout_s=self.config.start_timeout_s,
            recordings_dir=self.config.recordings_dir,
            waiting=self.waiting,
            limits=self.config.limits,
            peers=self.peers,
            after=after_call,
            observer=observer,
            **options,
        )

    async def busy_audio(self) -> np.ndarray:
        """The capacity apology as 16 kHz PCM16."""
        return await self.spoken(self.config.busy_message)

    async def spoken(self, text: str) -> np.ndarray:
        """A fixed message as 16 kHz PCM16, synthesized once (in a worker thread)."""
        if text not in self._spoken:
            chunks = await asyncio.to_thread(lambda: [c.pcm for c in self.bot.tts.synthesize(text)])
            self._spoken[text] = np.concatenate(chunks)
        return self._spoken[text]
