"""webrtcvad: the default detector. Tiny, fast, deterministic, and good on telephone audio."""

import numpy as np
import webrtcvad

from voicebot.audio.frames import SAMPLE_RATE


class WebRtcVAD:
    """Wraps webrtcvad; ``aggressiveness`` 0 (lenient) to 3 (strict about what is speech)."""

    vouches = True

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in range(4):
            raise ValueError(f"webrtcvad aggressiveness must be 0..3, not {aggressiveness}")
        self._vad = webrtcvad.Vad(aggressiveness)

    def speech_prob(self, frame: np.ndarray) -> float:
        return 1.0 if self._vad.is_speech(frame.tobytes(), SAMPLE_RATE) else 0.0

    def reset(self) -> None:
        """webrtcvad keeps only a short internal history; nothing to clear."""
