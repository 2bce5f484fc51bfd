"""The bot's outgoing audio: a queue of synthesized sentences played 20 ms per call tick.

Playout knows exactly how much of each sentence the caller has heard, which is what goes in
the transcript when the caller barges in.
"""

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from voicebot.audio.frames import FRAME_SAMPLES, SAMPLE_RATE, silence
from voicebot.events import Reply, SpeechChunk
from voicebot.pipeline.record import Turn

if TYPE_CHECKING:
    from voicebot.pipeline.scheduler import Job


@dataclass
class _Piece:
    """A synthesized sentence and how many of its samples have gone out."""

    chunk: SpeechChunk
    played: int = 0

    @property
    def done(self) -> bool:
        return self.played >= len(self.chunk.pcm)


@dataclass(eq=False)
class BotUtterance:
    """One reply on its way to the caller: chunks arrive from TTS, frames leave to the line."""

    reply: Reply
    caller: Turn | None = None  # the caller turn this answers (None for greeting, re-prompts)
    caller_text: str = ""  # what the dialog is asked, in clear, until it is asked
    tts_job: "Job | None" = None
    pieces: list[_Piece] = field(default_factory=list)
    synthesized: bool = False  # TTS has delivered every chunk
    first_audio: float | None = None
    ended: float | None = None
    interrupted: bool = False

    def spoken_text(self) -> str:
        """The words the caller actually heard; a half-played sentence counts pro rata."""
        words: list[str] = []
        for piece in self.pieces:
            piece_words = piece.chunk.text.split()
            if piece.done:
                words.extend(piece_words)
            else:
                share = piece.played / len(piece.chunk.pcm)
                words.extend(piece_words[: round(len(piece_words) * share)])
                break
        return " ".join(words)

    def _next_piece(self) -> _Piece | None:
        return next((p for p in self.pieces if not p.done), None)


@dataclass(frozen=True)
class PlayoutTick:
    pcm: np.ndarray
    started: list[BotUtterance]  # first audio of these went out in this frame
    finished: list[BotUtterance]  # these were played to the end


class Playout:
    """FIFO of utterances; ``next_frame`` is called once per 20 ms tick."""

    def __init__(self) -> None:
        self._queue: deque[BotUtterance] = deque()
        self.paused = False  # caller speech may be a barge-in: hold the audio where it is

    @property
    def current(self) -> BotUtterance | None:
        return self._queue[0] if self._queue else None

    @property
    def has_audio(self) -> bool:
        """True while an utterance has unplayed synthesized audio."""
        return any(u._next_piece() is not None for u in self._queue)

    def add(self, utterance: BotUtterance) -> None:
        self._queue.append(utterance)

    def push_chunk(self, utterance: BotUtterance, chunk: SpeechChunk) -> None:
        utterance.pieces.append(_Piece(chunk))

    def next_frame(self, t: float) -> PlayoutTick:
        """The frame to send at call time ``t``, with the utterances it started and finished."""
        out = silence()
        filled = 0
        started: list[BotUtterance] = []
        finished: list[BotUtterance] = []
        while filled < FRAME_SAMPLES and self._queue and not self.paused:
            utterance = self._queue[0]
            piece = utterance._next_piece()
            if piece is None:
                if not utterance.synthesized:
                    break  # waiting for TTS: play silence meanwhile
                utterance.ended = t + filled / SAMPLE_RATE
                finished.append(self._queue.popleft())
                continue
            if utterance.first_audio is None:
                utterance.first_audio = t + filled / SAMPLE_RATE
                started.append(utterance)
            take = min(FRAME_SAMPLES - filled, len(piece.chunk.pcm) - piece.played)
            out[filled : filled + take] = piece.chunk.pcm[piece.played : piece.played + take]
            piece.played += take
            filled += take
        return PlayoutTick(out, started, finished)

    def clear(self, t: float) -> list[BotUtterance]:
        """Barge-in: stop everything now; returns the utterances that were cut off."""
        cut = list(self._queue)
        for utterance in cut:
            utterance.interrupted = True
            utterance.ended = t
        self._queue.clear()
        self.paused = False
        return cut
