"""A simulated caller: plays recorded caller audio into a call as a person on the line would.

Each segment of caller audio waits for a cue (the bot finished talking, the bot started
talking, or the call started) plus a delay, so the same recording drives a polite caller or
one who talks over the bot. Between and after segments the line carries silence, as a real
phone line does. Both sides are recorded for a stereo file (caller left, bot right).
"""

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from voicebot.audio.frames import FRAME_S, FRAME_SAMPLES, iter_frames
from voicebot.audio.pcm import float_to_pcm16
from voicebot.events import AudioFrame, BotFrame, LineState


class Cue(StrEnum):
    BOT_DONE = "bot_done"  # the bot answered (spoke since the last segment) and now listens
    BOT_START = "bot_start"  # the bot started talking (for barge-in)
    CALL_START = "call_start"


@dataclass(frozen=True)
class CallerSegment:
    audio: np.ndarray  # 16 kHz mono float32
    cue: Cue = Cue.BOT_DONE
    delay_s: float = 0.5


class SimulatedCaller:
    """``Transport`` that feeds caller segments on cue; paced to the wall clock if ``realtime``."""

    shows_partials = True  # `voicebot call --realtime` prints them; evals exercise them
    ended_by = "caller"  # the script ran out: the caller hangs up

    def __init__(
        self, segments: list[CallerSegment], *, realtime: bool = False, tail_s: float = 30.0
    ) -> None:
        self._segments = list(segments)
        self._realtime = realtime
        self._tail_frames = round(tail_s / FRAME_S)
        self._tick = 0
        self._frames: list[np.ndarray] = []  # frames of the segment being played
        self._cue_seen_at: float | None = None
        self._state = LineState.THINKING
        self._bot_spoke = False  # since the caller last spoke: a polite caller waits for it
        self._wall_start: float | None = None
        self.caller_track: list[np.ndarray] = []
        self.bot_track: list[np.ndarray] = []
        self.private_ticks: list[bool] = []  # kept out of the stored recording (``stereo``)
        self.segment_starts: list[float] = []
        self.interrupts: list[float] = []

    async def receive(self) -> AudioFrame | None:
        t = self._tick * FRAME_S
        if self._realtime:
            if self._wall_start is None:
                self._wall_start = time.monotonic()
            delay = self._wall_start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if not self._frames and self._segments and self._cue_ready(t):
            segment = self._segments.pop(0)
            self._frames = list(iter_frames(float_to_pcm16(segment.audio)))
            self._cue_seen_at = None
            self.segment_starts.append(t)
        if self._frames:
            pcm = self._frames.pop(0)
            self._bot_spoke = False  # counts from the end of what the caller said
        elif self._segments:
            pcm = np.zeros(FRAME_SAMPLES, np.int16)
        elif self._tail_frames > 0:
            self._tail_frames -= 1
            pcm = np.zeros(FRAME_SAMPLES, np.int16)
        else:
            return None  # the caller hangs up
        self._tick += 1
        self.caller_track.append(pcm)
        return AudioFrame(pcm, t)

    def _cue_ready(self, t: float) -> bool:
        segment = self._segments[0]
        if segment.cue is Cue.CALL_START:
            return t >= segment.delay_s
        if segment.cue is Cue.BOT_DONE:
            ready = self._bot_spoke and self._state is LineState.LISTENING
        else:
            ready = self._state is LineState.SPEAKING
        if not ready:
            self._cue_seen_at = None
            return False
        if self._cue_seen_at is None:
            self._cue_seen_at = t
        return t - self._cue_seen_at >= segment.delay_s

    async def send(self, frame: BotFrame) -> None:
        self._state = frame.state
        self._bot_spoke = self._bot_spoke or frame.state is LineState.SPEAKING
        self.bot_track.append(frame.pcm)
        self.private_ticks.append(frame.private)

    async def interrupt(self) -> None:
        self.interrupts.append(self._tick * FRAME_S)

    def stereo(self) -> np.ndarray:
        """(samples, 2) int16: caller left, bot right, on the call's timeline; the call's
        recording, so private ticks (no consent, a sensitive answer) are silent."""
        n = min(len(self.caller_track), len(self.bot_track))
        if n == 0:
            return np.zeros((0, 2), np.int16)
        ticks = zip(self.caller_track[:n], self.bot_track[:n], self.private_ticks[:n], strict=True)
        frames = [
            np.zeros((len(c), 2), np.int16) if private else np.stack([c, b], axis=1)
            for c, b, private in ticks
        ]
        return np.concatenate(frames)
