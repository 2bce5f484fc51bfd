"""What every real-time line shares (Twilio today; SIP/RTP or LiveKit rooms next).

A protocol module parses its peer's messages and calls ``put_audio``, ``put_digit`` and
``end``; it implements ``_write_audio`` and ``_write_clear`` to serialize the bot's side.
Everything else is here, once:

- **Pacing.** The peer streams caller audio in real time (a phone line never stops), and the
  call answers each caller frame with one bot frame, so the bot's audio leaves exactly as
  fast as the caller's arrives. A caller frame is re-cut to 20 ms at 16 kHz whatever size
  and rate the peer sends.
- **Late frames.** A bot frame that leaves more than ``LATE_S`` after the caller frame of the
  same tick arrived is counted: the far end's jitter buffer may run dry.
- **No lasting delay.** The far end plays what it is sent in real time, so after a stall
  the frames the call catches up with would queue there and delay every later word. The
  line keeps an estimate of that queue; past ``MAX_QUEUED_S`` it skips a frame that is
  silence (nothing is lost) or a live voice (``BotFrame.live``: a glitch, not delay). The
  bot's own speech is never skipped: a late word beats a missing one.
- **Dead peers.** No caller audio for ``idle_timeout_s`` ends the call (a peer that neither
  streams nor hangs up); a peer that stops reading (a send blocked for ``send_timeout_s``)
  ends it too, so a stuck client never holds a call slot.
- **Real time.** Caller audio that arrives faster than the wall clock allows (more than
  ``MAX_AHEAD_S`` over the time since the line opened) is no live line: it is closed. Audio
  that piles up unread (``MAX_BACKLOG_FRAMES``) means the server fell behind (a stall, a
  swamped CPU): the oldest is dropped so that the call catches up, and only a server that
  keeps falling behind (``MAX_DROPPED_S`` dropped) ends the call, as ``overload``.
- **Why it ended.** ``Hangup.by`` says whose doing it was, as the record's ``ended_by``:
  the caller (hung up, went dead), the peer breaking its protocol, or the server
  (overloaded, shutting down, an internal error).
- **Keypad.** Digits are grouped into one entry: ``#`` ends it, or ``DIGIT_GAP_S`` of call
  time after the last key.
- **Echo and noise.** An optional ``CallerAudioProcessor`` cleans the caller's audio with the
  bot's outgoing audio as the echo reference.
- **Recording.** With a ``recorder`` set, each tick's caller frame (as it arrived, before
  clean-up) and bot frame are written to the call's stereo WAV (silence while the tick is
  private: no consent, or a sensitive answer).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from voicebot.audio.apm import CallerAudioProcessor
from voicebot.audio.frames import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE
from voicebot.audio.recorder import StereoRecorder
from voicebot.audio.resample import StreamResampler
from voicebot.events import AudioFrame, BotFrame

log = logging.getLogger(__name__)

LATE_S = 0.06  # three frames: more than a typical far-end jitter buffer absorbs
MAX_QUEUED_S = 0.08  # audio the far end may hold unplayed before silence is skipped
MAX_BACKLOG_FRAMES = 250  # 5 s of caller audio waiting unread: the server fell behind
MAX_DROPPED_S = 30.0  # caller audio dropped to catch up, in all, before the call is no use
_UNHEARD_FRAMES = 25  # caller audio kept until a call reads the line (0.5 s)
MAX_AHEAD_S = 2.0  # caller audio this far ahead of the wall clock: not a live line
_PROOF_SLACK_S = 0.1  # a line proving real-time pace may be this far ahead (jitter)
DIGIT_GAP_S = 1.5
KEYPAD_DIGITS = frozenset("0123456789")
KEYPAD_END = "#"


@dataclass(frozen=True)
class Hangup:
    """Why the line ended, as a WebSocket close code and reason (1000: normal), and whose
    doing it was (``by``, the call record's ``ended_by``): ``caller`` (hung up, went
    silent or stopped reading), ``protocol`` (the peer broke its protocol or flooded),
    ``overload`` (the server fell behind), ``shutdown`` or ``error`` (ours)."""

    code: int
    reason: str
    by: str = "caller"


class LiveLine:
    """Base ``Transport`` for a peer that streams caller audio in real time."""

    shows_partials = False  # a phone line; a line with a screen says so
    clear_drops_queued = True  # the far end drops its unplayed audio on ``_write_clear``

    def __init__(
        self,
        *,
        rate: int,
        idle_timeout_s: float = 5.0,
        send_timeout_s: float = 2.0,
        processor: CallerAudioProcessor | None = None,
        on_late: Callable[[], None] | None = None,
        on_peer_error: Callable[[str, str], None] | None = None,
        max_ahead_s: float | None = MAX_AHEAD_S,
    ) -> None:
        """``on_peer_error(kind, message)``: something the peer sent was wrong but not worth
        a hang-up (an unknown event); the server rate-limits these log lines.
        ``max_ahead_s``: None for a line fed faster than real time on purpose (a test)."""
        self._resampler = StreamResampler(rate, SAMPLE_RATE)
        self._idle_timeout_s = idle_timeout_s
        self._send_timeout_s = send_timeout_s
        self._processor = processor
        self._on_late = on_late or (lambda: None)
        self._on_peer_error = on_peer_error or (lambda kind, message: log.warning(message))
        self._max_ahead_s = max_ahead_s
        self._inbound: asyncio.Queue[tuple[np.ndarray, float] | None] = asyncio.Queue()
        self._partial = np.zeros(0, np.int16)
        self._digits = ""
        self._digit_t: float | None = None  # call time of the last key press
        self._digits_done = False
        self._tick = 0
        self._arrived = 0.0  # wall time the current tick's caller frame arrived
        self.hangup: Hangup | None = None
        self.ended = asyncio.Event()
        self.late_frames = 0
        self.skipped_frames = 0  # silent or live bot frames not sent (see ``MAX_QUEUED_S``)
        self._queued_s = 0.0  # our estimate of the sent audio the far end has yet to play
        self._sent_at: float | None = None
        self.caller_id: str | None = None  # the calling number, when the peer says
        # The carrier's own ids of this call (Twilio's call_sid, account_sid, stream_sid),
        # kept in the record and the handoff packet so the carrier's side can be matched.
        self.telephony: dict[str, str] = {}
        self.recorder: StereoRecorder | None = None
        self._heard = np.zeros(0, np.int16)  # this tick's caller frame, for the recorder
        self._opened_at = time.monotonic()  # no live peer sent more audio than time since
        self._frames_in = 0  # caller frames received, and when the first one came
        self._first_audio_at: float | None = None
        self.dropped_frames = 0  # caller frames dropped because the server fell behind
        self._audio_came = asyncio.Event()

    # --- the protocol module's side ------------------------------------------------------

    def set_input_rate(self, rate: int) -> None:
        """For peers that announce their sample rate in-band, before any audio."""
        self._resampler = StreamResampler(rate, SAMPLE_RATE)

    def put_audio(self, pcm: np.ndarray) -> None:
        """Caller audio at the line's rate, any length: queued as 20 ms 16 kHz frames."""
        if self.hangup is not None:
            return
        pcm = np.concatenate([self._partial, self._resampler.process(pcm)])
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        now = time.monotonic()
        for start in range(0, whole, FRAME_SAMPLES):
            self._inbound.put_nowait((pcm[start : start + FRAME_SAMPLES], now))
        self._partial = pcm[whole:]
        self._frames_in += whole // FRAME_SAMPLES
        self._audio_came.set()
        if self._first_audio_at is None:
            self._first_audio_at = now
        # Against the time since the line opened, not since the first audio was read: a
        # server that stalls reads a real-time peer's backlog at once.
        received, wall = self._frames_in * FRAME_S, now - self._opened_at
        if self._max_ahead_s is not None and received - wall > self._max_ahead_s:
            self.end(
                1008,
                f"caller audio faster than real time ({received:.1f} s of it in {wall:.1f} s)",
                by="protocol",
            )
        if not self._tick:
            while self._inbound.qsize() > _UNHEARD_FRAMES:
                self._inbound.get_nowait()  # no call reads this line (yet, or it was refused)
        elif self._inbound.qsize() > MAX_BACKLOG_FRAMES:
            self._catch_up()

    def _catch_up(self) -> None:
        """The call fell ``MAX_BACKLOG_FRAMES`` behind the caller: drop the older half, so
        that it hears the caller in step again (what was said then is lost, and counted);
        past ``MAX_DROPPED_S`` in all, the server cannot carry this call: it ends."""
        while self._inbound.qsize() > MAX_BACKLOG_FRAMES // 2:
            self._inbound.get_nowait()
            self.dropped_frames += 1
        dropped_s = self.dropped_frames * FRAME_S
        log.warning("server behind a call's audio: %.1f s of caller audio dropped", dropped_s)
        if dropped_s > MAX_DROPPED_S:
            reason = f"the server fell behind the caller's audio ({dropped_s:.0f} s dropped)"
            self.end(1013, reason, by="overload")

    def put_digit(self, digit: str) -> None:
        """One key press; ``#`` submits what was typed, other non-digits are ignored."""
        if digit == KEYPAD_END:
            self._digits_done = bool(self._digits)
        elif digit in KEYPAD_DIGITS:
            self._digits += digit
            self._digit_t = self._tick * FRAME_S

    def end(self, code: int, reason: str, by: str = "caller") -> None:
        """The line is over (caller hung up, protocol error...): the first reason stands."""
        if self.hangup is None:
            self.hangup = Hangup(code, reason, by)
            self._inbound.put_nowait(None)
            self.ended.set()
            self._audio_came.set()

    def peer_error(self, kind: str, message: str) -> None:
        """Something the peer sent was wrong, though not worth a hang-up (see ``__init__``)."""
        self._on_peer_error(kind, message)

    @property
    def ended_by(self) -> str:
        """Whose doing the end was (``Hangup.by``); ``caller`` while the line is up."""
        return self.hangup.by if self.hangup is not None else "caller"

    async def audio_for(self, seconds: float) -> bool:
        """Wait until the peer has streamed ``seconds`` of caller audio over as much wall
        time (a faster peer gets ahead of the clock and is closed meanwhile); False if
        the line ended first."""
        while self.hangup is None:
            received = self._frames_in * FRAME_S
            if received < seconds or self._first_audio_at is None:
                self._audio_came.clear()
                await self._audio_came.wait()
                continue
            behind = self._first_audio_at + received - _PROOF_SLACK_S - time.monotonic()
            if behind <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), behind)
        return False

    def begin(self) -> None:
        """A call starts reading the line: audio queued before it was heard by nobody, and
        is dropped, so that the call starts in step with the line (not behind it)."""
        while self._inbound.qsize() > 1:
            self._inbound.get_nowait()

    @property
    def started(self) -> bool:
        """The peer has said who it is and how it sends audio: the call may begin."""
        raise NotImplementedError

    def handle(self, text: str | None, data: bytes | None) -> None:
        """One message from the peer; raises ``LineProtocolError`` on bad input."""
        raise NotImplementedError

    async def _write_audio(self, frame: BotFrame) -> None:
        raise NotImplementedError

    async def _write_clear(self) -> None:
        raise NotImplementedError

    # --- Transport ------------------------------------------------------------------------

    async def receive(self) -> AudioFrame | None:
        if self.hangup is not None:
            return None
        try:
            item = await asyncio.wait_for(self._inbound.get(), self._idle_timeout_s)
        except TimeoutError:
            self.end(1008, f"no audio for {self._idle_timeout_s:g} s")
            return None
        if item is None:
            return None
        pcm, self._arrived = item
        self._heard = pcm
        t = self._tick * FRAME_S
        self._tick += 1
        if self._processor is not None:
            pcm = self._processor.near_end(pcm)
        return AudioFrame(pcm, t, dtmf=self._take_digits(t))

    def _take_digits(self, t: float) -> str:
        if not self._digits:
            return ""
        if not self._digits_done and t - (self._digit_t or 0.0) < DIGIT_GAP_S:
            return ""
        digits, self._digits, self._digits_done = self._digits, "", False
        return digits

    async def send(self, frame: BotFrame) -> None:
        if self.hangup is not None:
            return
        if self._processor is not None:
            self._processor.far_end(frame.pcm)
        if self.recorder is not None:
            self.recorder.write(self._heard, frame.pcm, frame.private)
        if time.monotonic() - self._arrived > LATE_S:
            self.late_frames += 1
            self._on_late()
        if self._far_end_full(frame):
            self.skipped_frames += 1
            return
        await self._guarded(self._write_audio(frame))

    def _far_end_full(self, frame: BotFrame) -> bool:
        """Whether ``frame`` is skippable and the far end already holds ``MAX_QUEUED_S`` of
        audio (it plays in real time what it was sent: the queue drains with the wall
        clock and grows by a frame per frame sent)."""
        now = time.monotonic()
        if self._sent_at is not None:
            self._queued_s = max(0.0, self._queued_s - (now - self._sent_at))
        self._sent_at = now
        if self._queued_s + FRAME_S > MAX_QUEUED_S and (frame.live or not frame.pcm.any()):
            return True
        self._queued_s += FRAME_S
        return False

    async def interrupt(self) -> None:
        if self.hangup is None:
            if self.clear_drops_queued:
                self._queued_s = 0.0
            await self._guarded(self._write_clear())

    async def _guarded(self, write: Awaitable[None]) -> None:
        """Run a write; a peer that does not take it in ``send_timeout_s`` ends the call."""
        try:
            await asyncio.wait_for(write, self._send_timeout_s)
        except TimeoutError:
            self.end(1008, f"client did not read the bot's audio for {self._send_timeout_s:g} s")
        except ConnectionError as exc:  # the socket is gone under us
            log.info("line write failed: %s", exc)
            self.end(1006, "connection lost")
