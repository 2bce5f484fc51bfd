"""The ASR stage protocol."""

from typing import Protocol

import numpy as np

from voicebot.events import Transcript


class ASR(Protocol):
    """Speech recognizer shared by all calls of a process; must be thread-safe.

    ``transcribe`` is blocking model compute: the pipeline calls it from a worker thread,
    never from the event loop.
    """

    name: str

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (one caller utterance, up to 30 s)."""
        ...
