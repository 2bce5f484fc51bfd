"""Live transfer to the built-in agent desktop: the caller holds, an agent talks to them.

When the bot hands a live call off (``record.ended_by == "handoff"``) the line stays open
and ``LiveQueue.hold`` takes it over with its own 20 ms loop on the same line, so the
recording and the line's pacing go on as before:

- **Holding.** The caller hears the pack's hold message (position in the queue and a wait
  estimate) every ``hold_every_s``, and the pack's ``hold_audio`` between messages; the bot
  says nothing else but keeps listening: what the caller says is recognized and recorded.
- **Bridged.** The agent who claimed the card opens ``/desk/bridge/<handoff_id>`` (the
  desktop's softphone: microphone through an AudioWorklet, 16 kHz PCM16 over a WebSocket).
  The caller's audio goes to the agent's browser and the agent's voice into the call, through
  a small jitter buffer. Both legs are recognized (one listener per leg) and both go into the
  call record (masked like every caller turn) and the stereo recording. If the agent's socket
  drops, the caller hears ``agent_left`` and is queued again: never dropped.
- **Timed out.** After ``queue_timeout_s`` unclaimed the caller is offered a callback: they
  confirm the caller ID (or say another number), or, failing that, leave a message. The
  handoff stays in the queue as a callback task.
- **Outcome.** ``packet["queue"]`` on the stored handoff and ``record.handoff["queue"]`` say
  how the wait ended: ``answered`` (by which agent, after how long), ``abandoned`` (the
  caller hung up: the handoff is closed and can no longer be claimed), ``callback_requested``
  or ``transferred_out``.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from voicebot.asr.base import ASR
from voicebot.audio.frames import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from voicebot.audio.io import load_audio
from voicebot.audio.pcm import float_to_pcm16, pcm16_to_float
from voicebot.audio.resample import StreamResampler
from voicebot.dialog.slots import parse_phone_number, parse_yes_no
from voicebot.errors import AudioInputError
from voicebot.events import (
    BotFrame,
    ConsentState,
    LineState,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from voicebot.handoff.config import QueueConfig, wait_text
from voicebot.pipeline.record import CallRecord, RecordSink, Turn
from voicebot.privacy.redact import guarded, redact
from voicebot.store.store import UnknownHandoffError
from voicebot.transports.line import LiveLine
from voicebot.vad import make_vad
from voicebot.vad.base import VAD
from voicebot.vad.endpointer import Endpointer

if TYPE_CHECKING:
    from voicebot.pipeline.bot import Bot
    from voicebot.store.store import Store

log = logging.getLogger(__name__)

QueueState = Literal[
    "holding", "answered", "offering", "abandoned", "callback_requested", "transferred_out"
]
MAX_AGENT_CHUNK_BYTES = 2 * 48_000 // 5  # 200 ms at 48 kHz: a live microphone sends less
JITTER_START_FRAMES = 2  # the agent's voice starts playing once 40 ms are buffered
JITTER_MAX_FRAMES = 10  # more than 200 ms behind: drop the oldest (latency stays bounded)
# A burst from the agent's socket (a stalled read) leaves the buffer deep, and a deep buffer
# is lasting delay: once it has held more than this for a whole second, a frame is dropped.
JITTER_TARGET_FRAMES = 3
_DRAIN_AFTER_FRAMES = 50
_PREROLL_FRAMES = 15  # 300 ms kept from before detected speech, as the session does
_PREPARE_TRIES, _PREPARE_RETRY_S = 30, 0.1  # the packet is durable within 3 s, or never


def chime(period_s: float = 4.0, level: float = 0.06) -> np.ndarray:
    """A soft two-note chime (E5, then C5) once every ``period_s``, as 16 kHz PCM16: the line
    is alive, and nothing in it sounds like speech to the caller's recognizer."""
    out = np.zeros(round(period_s * SAMPLE_RATE), np.float32)
    note = np.arange(round(0.45 * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.exp(-note * 6.0) * np.minimum(1.0, note / 0.01)  # struck, then fading
    for start_s, hz in ((0.0, 659.26), (0.5, 523.25)):
        start = round(start_s * SAMPLE_RATE)
        out[start : start + len(note)] += level * envelope * np.sin(2 * np.pi * hz * note)
    return float_to_pcm16(out)


class Leg:
    """One side of the call heard on the call clock: VAD, endpointer, Whisper in a thread.

    ``on_turn(role, transcript, start, end)`` runs on the event loop with each final."""

    def __init__(
        self,
        role: str,
        asr: ASR,
        vad: VAD,
        on_turn: Callable[[str, Transcript, float, float], None],
    ) -> None:
        self.role = role
        self._asr, self._vad, self._on_turn = asr, vad, on_turn
        self._endpointer = Endpointer()
        self._recent: deque[np.ndarray] = deque(maxlen=_PREROLL_FRAMES)
        self._audio: list[np.ndarray] | None = None
        self._tasks: set[asyncio.Task] = set()

    def push(self, t: float, pcm: np.ndarray) -> None:
        self._recent.append(pcm)
        if self._audio is not None:
            self._audio.append(pcm)
        prob = self._vad.speech_prob(pcm)
        event = self._endpointer.push(t, prob, vouched=self._vad.vouches)
        if isinstance(event, SpeechStarted):
            self._audio = list(self._recent)
        elif isinstance(event, SpeechEnded):
            audio, self._audio = self._audio, None
            if audio and not self._endpointer.is_noise(event):
                samples = pcm16_to_float(np.concatenate(audio))
                task = asyncio.create_task(self._transcribe(samples, event))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _transcribe(self, samples: np.ndarray, event: SpeechEnded) -> None:
        try:
            transcript = await asyncio.to_thread(self._asr.transcribe, samples)
        except Exception as exc:  # a failed recognition loses one turn's words, not the call
            log.error("%s leg: transcription failed: %r", self.role, exc)
            return
        self._on_turn(self.role, transcript, event.start, event.end)

    async def close(self) -> None:
        """Wait for the recognitions still running (the last words are recorded too)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class AgentLink:
    """The agent's softphone socket: their voice in (any rate, re-cut to 20 ms frames in a
    jitter buffer), the caller's voice and the live transcript out."""

    def __init__(
        self,
        name: str,
        send_text: Callable[[str], Awaitable[None]],
        send_bytes: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.name = name
        self._send_text, self._send_bytes = send_text, send_bytes
        self._resampler = StreamResampler(SAMPLE_RATE, SAMPLE_RATE)
        self._partial = np.zeros(0, np.int16)
        self._frames: deque[np.ndarray] = deque()
        self._playing = False
        self._deep_for = 0  # frames pulled in a row with the buffer past its target
        self.gone = asyncio.Event()
        self.hung_up = False  # the agent ended the call (not a dropped socket)
        self._outbox: deque[str | bytes] = deque()
        self._wake = asyncio.Event()

    def hang_up(self) -> None:
        """The agent ends the call (the softphone's button, or closing the card)."""
        self.hung_up = True
        self.gone.set()
        self._wake.set()

    def set_rate(self, rate: int) -> None:
        self._resampler = StreamResampler(rate, SAMPLE_RATE)

    def put_audio(self, pcm: np.ndarray) -> None:
        pcm = np.concatenate([self._partial, self._resampler.process(pcm)])
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            self._frames.append(pcm[start : start + FRAME_SAMPLES])
        self._partial = pcm[whole:]
        while len(self._frames) > JITTER_MAX_FRAMES:
            self._frames.popleft()

    def next_frame(self) -> np.ndarray:
        """The agent's next 20 ms for the caller (silence while the buffer refills)."""
        if not self._playing:
            self._playing = len(self._frames) >= JITTER_START_FRAMES
        if not self._playing or not self._frames:
            self._playing = False
            return np.zeros(FRAME_SAMPLES, np.int16)
        self._deep_for = self._deep_for + 1 if len(self._frames) > JITTER_TARGET_FRAMES else 0
        if self._deep_for >= _DRAIN_AFTER_FRAMES:
            self._frames.popleft()  # 20 ms of the agent's voice, for 20 ms less delay
            self._deep_for = 0
        return self._frames.popleft()

    def to_agent(self, message: str | bytes) -> None:
        """Queue something for the agent's page; a slow page never stalls the call."""
        if len(self._outbox) < 500:  # 10 s of audio: beyond that the page is not reading
            self._outbox.append(message)
            self._wake.set()

    async def pump(self) -> None:
        """Write the outbox to the socket until the agent is gone."""
        try:
            while not self.gone.is_set():
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    item = self._outbox.popleft()
                    if isinstance(item, bytes):
                        await self._send_bytes(item)
                    else:
                        await self._send_text(item)
        except ConnectionError:
            self.gone.set()

    async def flush(self) -> None:
        """Send what is still queued (the "ended" event), ignoring a closed socket."""
        with contextlib.suppress(ConnectionError):
            while self._outbox:
                item = self._outbox.popleft()
                if isinstance(item, bytes):
                    continue  # audio after the end: nobody is listening
                await self._send_text(item)


class HeldCall:
    """One handed-off caller on the line, from the transfer message until they leave."""

    def __init__(
        self,
        queue: "LiveQueue",
        line: LiveLine,
        record: CallRecord,
        sinks: list[RecordSink],
    ) -> None:
        assert record.handoff is not None
        self.queue, self.line, self.record, self.sinks = queue, line, record, sinks
        self.handoff_id: str = record.handoff["handoff_id"]
        self.config = queue.config
        self.state: QueueState = "holding"
        self.agent: AgentLink | None = None
        self.bridged = asyncio.Event()
        self.done = asyncio.Event()  # the caller's line is over
        self.end_reason = "call ended"
        self._now = record.duration_s
        self._queued_at = record.duration_s
        self._wall_queued = time.monotonic()
        self._next_hold = self._now
        self._say: deque[np.ndarray] = deque()  # 20 ms frames of the message playing
        self._hold_audio_at = 0  # where in the hold audio loop the caller is
        self._speaking: asyncio.Task | None = None
        self._ending = False  # the farewell is queued: hang up once it has played
        self._attempts = 0
        self._asking = False
        consent = (record.consent or {}).get("state", ConsentState.NONE.value)
        self._private = not ConsentState(consent).allows_recording
        self.caller_leg = Leg("caller", queue.asr, queue.vad(), self._on_turn)
        self.agent_leg: Leg | None = None
        self.events: list[tuple[str, float]] = []  # (what, call time): hold, agent_audio...
        holding = {"state": "holding", "queued_t": round(self._queued_at, 3)}
        if queue.worker is not None:
            holding["worker"] = queue.worker  # where the softphone must connect (desk.py)
        self._set_queue(holding)

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                frame = await self.line.receive()
                if frame is None:
                    self._caller_left()
                    break
                self._now = frame.t
                self.caller_leg.push(frame.t, frame.pcm)
                agent = self.agent
                if agent is not None and agent.gone.is_set():
                    self._agent_left(agent)
                    agent = None
                if agent is not None:
                    agent.to_agent(frame.pcm.astype("<i2").tobytes())
                    pcm = agent.next_frame()
                    if self.agent_leg is not None:
                        self.agent_leg.push(frame.t, pcm)
                    if pcm.any() and not any(e[0] == "agent_audio" for e in self.events):
                        self.events.append(("agent_audio", frame.t))
                else:
                    await self._waiting()
                    pcm = self._say.popleft() if self._say else self._between_messages()
                    if pcm.any() and not any(e[0] == "hold_audio" for e in self.events):
                        self.events.append(("hold_audio", frame.t))
                state = LineState.SPEAKING if pcm.any() else LineState.LISTENING
                live = agent is not None
                await self.line.send(BotFrame(pcm, frame.t, state, self._private, live))
                if self._ending and not self._say and self._speaking is None:
                    break
        finally:
            await self.caller_leg.close()
            if self.agent_leg is not None:
                await self.agent_leg.close()
            self.end_reason = "caller hung up" if self.line.hangup is not None else "call ended"
            if self.agent is not None:
                self.agent.to_agent(json.dumps({"type": "ended", "reason": self.end_reason}))
            self._persist()
            self.done.set()

    async def _waiting(self) -> None:
        """Hold messages, and the callback offer once the queue timeout has passed."""
        if self._speaking is not None or self._say or self._ending:
            return
        if self.state == "holding":
            if self._now - self._queued_at >= self.config.queue_timeout_s:
                if await self.queue.still_queued(self.handoff_id):
                    self._offer_callback()
                    return
                self._queued_at = self._now  # claimed: the agent is on the way
            if self._now >= self._next_hold:
                self._next_hold = self._now + self.config.hold_every_s
                position = await self.queue.position(self.handoff_id)
                self._speak(self.queue.hold_text(position), "hold")

    def _between_messages(self) -> np.ndarray:
        """The next 20 ms of hold audio while holding; silence while the caller is asked
        something (the callback offer) or the call is ending."""
        loop = self.queue.hold_audio
        if self.state != "holding" or self._ending or not len(loop):
            return np.zeros(FRAME_SAMPLES, np.int16)
        frame = loop[self._hold_audio_at : self._hold_audio_at + FRAME_SAMPLES]
        self._hold_audio_at = (self._hold_audio_at + FRAME_SAMPLES) % len(loop)
        return frame

    def _speak(self, text: str, kind: str) -> None:
        async def synthesize() -> None:
            try:
                audio = await self.queue.speak(text)
            finally:
                self._speaking = None
            start = self._now + len(self._say) * FRAME_S
            padded = np.concatenate(
                [audio, np.zeros(-len(audio) % FRAME_SAMPLES, np.int16)]
            ).astype(np.int16)
            self._say.extend(padded.reshape(-1, FRAME_SAMPLES))
            turn = Turn(
                role="bot",
                text=guarded(lambda: redact(text).text),
                start=round(start, 3),
                end=round(start + len(padded) / SAMPLE_RATE, 3),
                kind=kind,
            )
            self.record.turns.append(turn)
            self._persist()

        self._speaking = asyncio.create_task(synthesize())

    # --- what the caller says ------------------------------------------------------------

    def _on_turn(self, role: str, transcript: Transcript, start: float, end: float) -> None:
        text = transcript.text
        turn = Turn(
            role=role,
            text=text,
            start=round(start, 3),
            end=round(end, 3),
            kind="bridge" if self.state == "answered" else "queue",
            asr={
                "avg_logprob": round(transcript.avg_logprob, 4),
                "no_speech_prob": round(transcript.no_speech_prob, 4),
                "rtf": round(transcript.rtf, 4),
                "raw_text": transcript.raw_text,
            },
            dropped=transcript.dropped,
        )
        turn.text = guarded(lambda: redact(text).text)
        if turn.asr is not None:
            turn.asr["raw_text"] = guarded(lambda: redact(transcript.raw_text).text)
        self.record.turns.append(turn)
        self._persist()
        if self.agent is not None:
            self.agent.to_agent(
                json.dumps({"type": "turn", "role": role, "text": turn.text, "start": turn.start})
            )
        if role == "caller" and not transcript.dropped and self._asking:
            self._callback_answer(text)

    # --- callback --------------------------------------------------------------------------

    def _offer_callback(self) -> None:
        self.state = "offering"
        self._set_queue({"state": "offering"})
        self._asking = True
        number = self.record.caller_id
        if number:
            self._speak(self.config.callback_offer.format(last_four=number[-4:]), "callback")
        else:
            self._speak(self.config.callback_ask, "callback")

    def _callback_answer(self, text: str) -> None:
        if self.state == "callback_requested":  # the message
            self._asking = False
            self._finish_callback(None, text)
            return
        number = parse_phone_number(text)
        if number is None and parse_yes_no(text) and self.record.caller_id:
            number = self.record.caller_id
        if number is not None:
            self._asking = False
            self._finish_callback(number, None)
            return
        self._attempts += 1
        if self._attempts < self.config.callback_attempts:
            self._speak(self.config.callback_ask, "callback")
        else:
            self.state = "callback_requested"
            self._speak(self.config.message_prompt, "callback")

    def _finish_callback(self, number: str | None, message: str | None) -> None:
        self.state = "callback_requested"
        callback: dict[str, Any] = {"callback_number": number}
        if message is not None:
            callback["message"] = guarded(lambda: redact(message).text)
        self._set_queue({"state": "callback_requested", "callback": callback})
        if number is not None:
            self._speak(self.config.callback_done.format(last_four=number[-4:]), "farewell")
        else:
            self._speak(self.config.message_done, "farewell")
        self._ending = True

    # --- agents ----------------------------------------------------------------------------

    def connect(self, agent: AgentLink) -> None:
        """The claiming agent's softphone is open: from the next tick they talk."""
        self.agent = agent
        self.agent_leg = Leg("agent", self.queue.asr, self.queue.vad(), self._on_turn)
        self._say.clear()
        self._asking = False
        self.state = "answered"
        waited = round(self._now - self._queued_at, 3)
        self.events.append(("bridged", self._now))
        self._set_queue({"state": "answered", "agent": agent.name, "waited_s": waited})
        self.bridged.set()

    def hang_up(self) -> None:
        """The claiming agent closed the handoff: end the call (bridged or still holding)."""
        if self.agent is not None:
            self.agent.hang_up()
        else:
            self._say.clear()
            self._ending = True

    def _agent_left(self, agent: AgentLink) -> None:
        self.agent = None
        self.agent_leg = None
        if agent.hung_up:
            self._say.clear()
            self._ending = True  # the agent ended the call
            return
        self.state = "holding"
        self._queued_at = self._now
        self._next_hold = self._now + self.config.hold_every_s
        self.bridged.clear()
        self._speak(self.config.agent_left, "hold")
        self._set_queue({"state": "holding", "requeued_from": agent.name}, requeue=agent.name)

    def _caller_left(self) -> None:
        if self.state in ("holding", "offering"):
            self.state = "abandoned"
            waited = round(self._now - self._queued_at, 3)
            self._set_queue({"state": "abandoned", "waited_s": waited})

    # --- the record and the store -----------------------------------------------------------

    def _set_queue(self, change: dict[str, Any], requeue: str | None = None) -> None:
        assert self.record.handoff is not None
        queue = {**self.record.handoff.get("queue", {}), **change}
        if change["state"] == "holding":
            queue.pop("agent", None)  # back in the queue: nobody has the caller
        self.record.handoff["queue"] = queue
        self._persist()
        self.queue.store_queue(self.handoff_id, queue, requeue)

    def _persist(self) -> None:
        self.record.duration_s = max(self.record.duration_s, round(self._now, 3))
        for sink in self.sinks:
            sink.update(self.record)


class LiveQueue:
    """The handed-off callers this process holds, by handoff id, and what they share."""

    def __init__(
        self,
        store: "Store",
        bot: "Bot",
        speak: Callable[[str], Awaitable[np.ndarray]],
        config: QueueConfig | None = None,
        worker: str | None = None,
    ) -> None:
        """``bot``'s recognizer hears both legs; ``config``: the bot's pack ``queue:``;
        ``worker``: this worker's name behind the balancer (``ServerConfig.worker_name``)."""
        self.store, self.speak, self._bot, self._config = store, speak, bot, config
        self.worker = worker
        self.held: dict[str, HeldCall] = {}
        self._writes: set[asyncio.Task] = set()
        self._hold_audio: dict[str, np.ndarray] = {}

    async def hold(self, line: LiveLine, record: CallRecord, sinks: list[RecordSink]) -> None:
        """Hold ``line``'s handed-off caller until an agent, a callback or a hang-up ends it."""
        if record.handoff is None or line.hangup is not None:
            return
        held = HeldCall(self, line, record, sinks)
        self.held[held.handoff_id] = held
        try:
            # The card is on the desk from the handoff decision, while the transfer message
            # still plays: an agent may have closed it before the caller got here (the close
            # found nobody to hang up). Looked at once registered, so no close is missed.
            if await self.closed(held.handoff_id):
                held.hang_up()
            await held.run()
        finally:
            self.held.pop(held.handoff_id, None)
            await self.settle()

    @property
    def config(self) -> QueueConfig:
        return self._config or self._bot.pack.queue

    @property
    def hold_audio(self) -> np.ndarray:
        """The pack's hold audio as 16 kHz PCM16, whole frames (empty: silence), loaded once."""
        name = self.config.hold_audio
        if name not in self._hold_audio:
            if name == "silence":
                pcm = np.zeros(0, np.int16)
            elif name == "chime":
                pcm = chime()
            else:
                try:
                    pcm = float_to_pcm16(load_audio(Path(name)))
                except AudioInputError as exc:  # the pack checked it exists; it is unreadable
                    log.error("queue.hold_audio %r: %s: holding in silence", name, exc)
                    pcm = np.zeros(0, np.int16)
            self._hold_audio[name] = pcm[: len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES]
        return self._hold_audio[name]

    @property
    def asr(self) -> ASR:
        return self._bot.asr

    def vad(self) -> VAD:
        return make_vad(self._bot.config.vad)

    def live(self, handoff_id: str) -> HeldCall | None:
        return self.held.get(handoff_id)

    def hold_text(self, position: int) -> str:
        wait = wait_text(position * self.config.wait_per_caller_s)
        return self.config.hold_message.format(position=position, wait=wait)

    def prepare(self, handoff_id: str) -> None:
        """The bot has just decided to hand off: synthesize the first hold message while the
        transfer message plays, so the caller hears it straight after (``speak`` keeps it),
        not one Piper run later."""

        async def synthesize() -> None:
            for _ in range(_PREPARE_TRIES):
                try:
                    position = await self.position(handoff_id)
                except UnknownHandoffError:  # the packet is on its way to the store
                    await asyncio.sleep(_PREPARE_RETRY_S)
                    continue
                await self.speak(self.hold_text(position))
                return

        task = asyncio.create_task(synthesize())
        self._writes.add(task)
        task.add_done_callback(self._prepared)

    def _prepared(self, task: asyncio.Task) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("first hold message not prepared: %r", task.exception())

    async def position(self, handoff_id: str) -> int:
        return await asyncio.to_thread(self.store.queue_position, handoff_id)

    async def still_queued(self, handoff_id: str) -> bool:
        return await self._status(handoff_id) == "queued"

    async def closed(self, handoff_id: str) -> bool:
        try:
            return await self._status(handoff_id) == "closed"
        except UnknownHandoffError:  # not stored yet (the writer is behind): still open
            return False

    async def _status(self, handoff_id: str) -> str:
        row = await asyncio.to_thread(self.store.get_handoff, handoff_id)
        return str(row["status"])

    def store_queue(self, handoff_id: str, queue: dict[str, Any], requeue: str | None) -> None:
        """Write the queue state in a thread, in order; the call never waits for it."""
        previous = list(self._writes)

        async def write() -> None:
            if previous:
                await asyncio.gather(*previous, return_exceptions=True)
            try:
                await asyncio.to_thread(self.store.set_queue, handoff_id, queue, requeue)
            except Exception:  # the call record has it; the store must not end the call
                log.exception("could not store the queue state of handoff %s", handoff_id)

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def settle(self) -> None:
        """Wait for the queue writes still on their way to the store."""
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._writes), return_exceptions=True)
