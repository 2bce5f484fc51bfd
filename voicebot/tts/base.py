"""The TTS stage protocol."""

from collections.abc import Iterator
from typing import Protocol

from voicebot.events import SpeechChunk


class TTS(Protocol):
    """Speech synthesizer shared by all calls of a process; must be thread-safe.

    ``synthesize`` yields one chunk per sentence as soon as it is ready, so the first
    sentence plays while the rest is still being synthesized.
    """

    name: str

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """Blocking generator of 16 kHz mono PCM16 chunks; run it in a worker thread."""
        ...
