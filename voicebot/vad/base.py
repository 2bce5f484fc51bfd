"""The VAD stage protocol: one speech probability per 20 ms frame."""

from typing import Protocol

import numpy as np


class VAD(Protocol):
    """Voice-activity detector for one call (it may keep state between frames).

    ``vouches``: after the latest frame, whether the detector stands by its frames being
    speech at all. A single detector always does; one that times frames with one model and
    checks with another (``voicebot.vad.silero.ConfirmedVAD``) says whether the second has
    heard speech lately, and the endpointer counts the frames only then."""

    vouches: bool

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
