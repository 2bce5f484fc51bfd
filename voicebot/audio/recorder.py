"""Call recordings: a stereo 16 kHz WAV per call, caller left, bot right, on one timeline.

Written frame by frame as the call goes (nothing accumulates in memory, so an hour-long
call costs no more than a short one); the WAV header gets its final length on ``close``.
Recording is off unless the operator turns it on (``voicebot serve --recordings DIR``), and
then only what the caller consented to is kept: ticks marked private (no consent yet, or a
sensitive answer being given: ``BotFrame.private``) are written as silence, and a call that
never allowed recording leaves no file at all. The file is the owner's only (0600).
"""

from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.privacy.storage import open_private


class StereoRecorder:
    """``write(caller, bot, private)`` once per 20 ms tick, then ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: sf.SoundFile | None = None
        self._silent = 0  # private samples before the file was opened

    @property
    def exists(self) -> bool:
        """Whether any tick was allowed into the recording (only then is there a file)."""
        return self._file is not None

    def write(self, caller: np.ndarray, bot: np.ndarray, private: bool = False) -> None:
        """One tick of both legs (PCM16); the shorter one is padded with silence."""
        n = max(len(caller), len(bot))
        if private and self._file is None:
            self._silent += n  # opened lazily: a call without consent leaves no file
            return
        if self._file is None:
            self._file = sf.SoundFile(
                open_private(self.path, "w+b"),
                "w",
                samplerate=SAMPLE_RATE,
                channels=2,
                subtype="PCM_16",
                format="WAV",
                closefd=True,
            )
            self._file.write(np.zeros((self._silent, 2), np.int16))
        frame = np.zeros((n, 2), np.int16)
        if not private:
            frame[: len(caller), 0] = caller
            frame[: len(bot), 1] = bot
        self._file.write(frame)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
