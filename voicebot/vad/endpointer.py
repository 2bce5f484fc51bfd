"""Endpointing: turns per-frame speech probabilities into caller turns.

A turn starts after ``start_ms`` of consecutive speech (so a click or a cough does not
interrupt the bot) and ends after ``silence_timeout_ms`` of silence. In between, the first
``eager_ms`` of silence raises ``SpeechPaused`` so the pipeline can transcribe speculatively
while it waits to be sure the caller has finished: that hides most of the ASR time inside the
silence timeout.

The timeout of one pause can be changed while it lasts (``hold``): dialog-aware endpointing
(``voicebot.pipeline.endpoint``) shortens it when the speculative transcript already holds
what the bot asked for, and lengthens it when the caller is clearly not done.

Only speech that stands out of the line's background opens a turn (``LineLevel``): a TV or
a crowd behind the caller is speech to any detector (Silero hears six-talker babble as
speech in 85% of its frames, docs/benchmarks.md), but the caller is at the phone and the
background is not. The background is the median level of the frames heard outside turns
over the last few seconds, so the caller's own speech never raises it; a turn opens on
frames ``foreground_db`` above it. Inside a turn every voiced frame counts, so a caller on
a noisy line is not chopped into pieces.

A caller who talks on without a pause (or a line the detector hears as speech throughout)
is cut at ``max_turn_ms``: that turn ends (``SpeechEnded.cut``) and the next one starts at
once, so the recognizer gets pieces it can decode and the call is never stuck in one turn.
"""

from dataclasses import dataclass

import numpy as np

from voicebot.audio.frames import FRAME_MS, FRAME_S
from voicebot.audio.pcm import SILENCE_DBFS
from voicebot.events import SpeechEnded, SpeechPaused, SpeechStarted

EndpointEvent = SpeechStarted | SpeechPaused | SpeechEnded
# How far before the frame a second detector vouched on a turn may start: Silero fires
# ~80 ms after webrtcvad on a word's onset, and the turn starts where the voiced frames did.
LOOKBACK_FRAMES = 10


@dataclass(frozen=True)
class EndpointerConfig:
    threshold: float = 0.5  # speech probability above which a frame counts as speech
    start_ms: int = 100  # consecutive speech that opens a turn (and barges in)
    silence_timeout_ms: int = 500  # trailing silence that closes a turn
    # Trailing silence that triggers a speculative transcription. Early enough that tiny.en
    # (~0.45 s a turn on 2 cores) is done when the timeout confirms the turn: 160 ms left it
    # ~90 ms late. webrtcvad's own hangover already follows the last audible sound by
    # 100-300 ms, so the word endings are in (same transcripts; docs/benchmarks.md).
    eager_ms: int = 80
    min_voiced_ms: int = 200  # turns with less voiced audio are noise, not speech
    # Dialog-aware endpointing (voicebot.pipeline.endpoint): the pause that ends a turn once
    # the speculative transcript holds what was asked for, and the longest wait when it
    # clearly does not (3 of 5 digits, a trailing "and"). Off: every pause is the timeout.
    dialog_aware: bool = True
    complete_ms: int = 240
    incomplete_ms: int = 1800
    # An audio end-of-turn model for open answers (a free request), where the text rules
    # are unsure: "smart-turn-v3.2" (voicebot.vad.smart_turn) or an .onnx path; None: off.
    # At ``turn_threshold`` or above its turn is complete, else the caller is mid-sentence.
    turn_model: str | None = None
    turn_threshold: float = 0.5
    # The longest turn: Whisper decodes 30 s windows, and 20 s of speech without a pause is
    # a monologue the dialog should start working on (the next turn carries on from it).
    max_turn_ms: int = 20_000
    # A turn opens only on frames this far above the background's median level (6 dB:
    # twice its amplitude), learnt over the last ``background_s`` outside turns. 6 dB lets
    # no babble, hum, music or traffic open a turn at any level, and keeps callers 10 dB
    # over them (scripts/bench_noise.py, docs/benchmarks.md).
    foreground_db: float = 6.0
    background_s: float = 3.0

    def __post_init__(self) -> None:
        names = ("start_ms", "silence_timeout_ms", "eager_ms", "complete_ms", "incomplete_ms")
        for name in (*names, "max_turn_ms"):
            if getattr(self, name) < FRAME_MS:
                raise ValueError(f"{name} must be at least one frame ({FRAME_MS} ms)")
        if self.eager_ms >= min(self.silence_timeout_ms, self.complete_ms):
            raise ValueError("eager_ms must be shorter than silence_timeout_ms and complete_ms")
        if self.max_turn_ms <= self.start_ms:
            raise ValueError("max_turn_ms must be longer than start_ms")
        if self.foreground_db < 0 or self.background_s < FRAME_S:
            raise ValueError("foreground_db must be >= 0 and background_s at least one frame")


class LineLevel:
    """The background level of one call's line: the median level of the last
    ``window_s`` of frames heard outside turns."""

    def __init__(self, window_s: float) -> None:
        self._levels = np.full(round(window_s / FRAME_S), SILENCE_DBFS)
        self._heard = 0

    @property
    def background_db(self) -> float:
        if self._heard == 0:
            return SILENCE_DBFS
        return float(np.median(self._levels[: min(self._heard, len(self._levels))]))

    def hear(self, level_db: float) -> None:
        """A frame heard outside a turn, at ``level_db`` dBFS."""
        self._levels[self._heard % len(self._levels)] = level_db
        self._heard += 1


class Endpointer:
    """Per-call state machine fed one probability (and level) per 20 ms frame."""

    def __init__(self, config: EndpointerConfig | None = None) -> None:
        self.config = config or EndpointerConfig()
        self._start_frames = self.config.start_ms // FRAME_MS
        self._max_turn_s = self.config.max_turn_ms / 1000
        self._eager_frames = self.config.eager_ms // FRAME_MS
        self._default_end_frames = self.config.silence_timeout_ms // FRAME_MS
        self._end_frames = self._default_end_frames  # this pause's timeout (see ``hold``)
        self.in_speech = False
        self._run = 0  # consecutive speech frames while idle, silence frames while in speech
        self._turn_start = 0.0
        self._last_voiced_end = 0.0
        self._voiced_frames = 0
        self.line = LineLevel(self.config.background_s)

    @property
    def voiced_s(self) -> float:
        """Seconds of voiced frames in the current turn so far."""
        return self._voiced_frames * FRAME_S if self.in_speech else 0.0

    @property
    def paused(self) -> bool:
        """In a turn, and silent for at least ``eager_ms``: the caller may have finished."""
        return self.in_speech and self._run >= self._eager_frames

    @property
    def silence_s(self) -> float:
        """Seconds of silence since the last voiced frame of the open turn."""
        return self._run * FRAME_S if self.in_speech else 0.0

    @property
    def last_voiced_end(self) -> float:
        return self._last_voiced_end

    def hold(self, timeout_ms: int) -> None:
        """End the current pause's turn after ``timeout_ms`` of silence instead of the
        configured timeout (at the next frame if that much has passed already). Speech
        resuming brings back the configured timeout."""
        self._end_frames = max(self._eager_frames + 1, timeout_ms // FRAME_MS)

    def push(
        self, t: float, prob: float, level_db: float | None = None, vouched: bool = True
    ) -> EndpointEvent | None:
        """Feed the frame starting at call time ``t``; returns the event it completes, if any.

        ``prob``: the VAD's speech probability; ``level_db``: the frame's level in dBFS (None:
        levels are not tracked, and any voiced frame may open a turn); ``vouched``: the VAD
        hears speech on the line around this frame (``VAD.vouches``, a second detector's
        opinion): voiced frames count inside a turn only where it does, and a turn opens once
        it does, at the first voiced frame before (up to ``LOOKBACK_FRAMES`` earlier)."""
        voiced = prob >= self.config.threshold
        if not self.in_speech:
            if level_db is not None:
                foreground = level_db >= self.line.background_db + self.config.foreground_db
                self.line.hear(level_db)
                voiced = voiced and foreground
            self._run = self._run + 1 if voiced else 0
            if self._run < self._start_frames or not vouched:
                return None
            run = min(self._run, self._start_frames + LOOKBACK_FRAMES)
            self.in_speech = True
            self._turn_start = t - (run - 1) * FRAME_S
            self._voiced_frames = run
            self._last_voiced_end = t + FRAME_S
            self._run = 0
            return SpeechStarted(t=self._turn_start)
        voiced = voiced and vouched
        if voiced:
            self._run = 0
            self._end_frames = self._default_end_frames
            if t + FRAME_S - self._turn_start >= self._max_turn_s - 1e-9:
                return self._cut(t + FRAME_S)
            self._voiced_frames += 1
            self._last_voiced_end = t + FRAME_S
            return None
        self._run += 1
        if self._run == self._eager_frames:
            return SpeechPaused(end=self._last_voiced_end)
        if self._run < self._end_frames:
            return None
        self.in_speech = False
        self._run = 0
        self._end_frames = self._default_end_frames
        return SpeechEnded(
            start=self._turn_start,
            end=self._last_voiced_end,
            voiced_s=self._voiced_frames * FRAME_S,
        )

    def _cut(self, at: float) -> SpeechEnded:
        """End the turn at ``at`` (the end of a voiced frame, which it keeps) and open the
        next one there: the caller is still talking."""
        ended = SpeechEnded(
            start=self._turn_start,
            end=at,
            voiced_s=(self._voiced_frames + 1) * FRAME_S,
            cut=True,
        )
        self._turn_start = self._last_voiced_end = at
        self._voiced_frames = 0
        return ended

    def is_noise(self, ended: SpeechEnded) -> bool:
        """True when a closed turn had too little voiced audio to be worth transcribing."""
        return ended.voiced_s * 1000 < self.config.min_voiced_ms
