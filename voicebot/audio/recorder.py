"""Call recordings: a stereo 16 kHz WAV per call, caller left, bot right, on one timeline.

Written frame by frame as the call goes (nothing accumulates in memory, so an hour-long
call costs no more than a short one); the WAV header gets its final length on ``close``.
Recording is off unless the operator turns it on (``voicebot serve --recordings DIR``):
many jurisdictions require telling callers first, e.g. in the pack's greeting.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio.frames import SAMPLE_RATE


class StereoRecorder:
    """``write(caller, bot)`` once per 20 ms tick, then ``close``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = sf.SoundFile(
            path, "w", samplerate=SAMPLE_RATE, channels=2, subtype="PCM_16", format="WAV"
        )

    def write(self, caller: np.ndarray, bot: np.ndarray) -> None:
        """One tick of both legs (PCM16); the shorter one is padded with silence."""
        n = max(len(caller), len(bot))
        frame = np.zeros((n, 2), np.int16)
        frame[: len(caller), 0] = caller
        frame[: len(bot), 1] = bot
        self._file.write(frame)

    def close(self) -> None:
        self._file.close()
