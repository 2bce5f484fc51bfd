"""The VAD stage protocol: one speech probability per 20 ms frame."""

from typing import Protocol

import numpy as np


class VAD(Protocol):
    """Voice-activity detector for one call (it may keep state between frames)."""

    def speech_prob(self, frame: np.ndarray) -> float:
        """Probability in [0, 1] that a 20 ms 16 kHz PCM16 frame holds speech."""
        ...

    def reset(self) -> None:
        """Forget state, e.g. when a new call reuses the detector."""
        ...


class TurnModel(Protocol):
    """An audio end-of-turn model (``voicebot.vad.smart_turn``), shared by every call."""

    def p_complete(self, audio: np.ndarray) -> float:
        """Probability that the turn in ``audio`` (16 kHz float32, so far) is over."""
        ...
