"""The ASR stage protocol."""

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from voicebot.events import Expectation, Transcript


@dataclass(frozen=True)
class ASRContext:
    """What the recognizer may know about an utterance before hearing it.

    ``expects`` is the answer the bot's open question asks for (a digit question gets a
    digit-biased decode); ``vocabulary`` holds the domain's words (the pack's bank and
    product names), which bias every other turn. Both only steer the decoder: the audio
    still decides, and ``None`` (or an empty context) is a plain decode.
    """

    expects: Expectation = field(default_factory=Expectation)
    vocabulary: tuple[str, ...] = ()


class ASR(Protocol):
    """Speech recognizer shared by all calls of a process; must be thread-safe.

    ``transcribe`` is blocking model compute: the pipeline calls it from a worker thread,
    never from the event loop.
    """

    name: str

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (one caller utterance, up to 30 s)."""
        ...


class ASRCall(Protocol):
    """One call's requests to a shared engine (see ``EngineASR``)."""

    def submit(
        self, audio: np.ndarray, *, final: bool, context: ASRContext | None = None
    ) -> "Future[Transcript]":
        """Queue a request; partials (``final=False``) may be dropped under load."""
        ...

    def close(self) -> None:
        """The call ended: its pending requests are dropped, nobody else waits on them."""
        ...


@runtime_checkable
class EngineASR(Protocol):
    """An ASR that batches the requests of every call itself (the GPU engine).

    The pipeline submits to it directly instead of blocking a worker thread per request,
    so the engine sees every call's requests at once, and tells partials from finals.
    """

    def open_call(self) -> ASRCall: ...
