"""Speech recognition stage.

``--asr [BACKEND:]MODEL``: ``faster-whisper:base`` (CTranslate2), ``torch:base`` (transformers,
one batching engine shared by every call of the process) or ``auto:base`` / ``base`` (the
default: faster-whisper where CTranslate2 can use the device, torch otherwise).
"""

import logging
import threading
from pathlib import Path

import numpy as np

from voicebot.asr.base import ASR, ASRContext, EngineASR
from voicebot.asr.guards import GuardConfig
from voicebot.errors import ASRConfigError
from voicebot.events import Expect, Transcript

__all__ = [
    "ASR",
    "BACKENDS",
    "DigitTurnsASR",
    "GuardConfig",
    "choose_backend",
    "make_asr",
    "split_backend",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "faster-whisper", "torch")
_engines: dict[tuple, ASR] = {}
_engines_lock = threading.Lock()


def split_backend(spec: str) -> tuple[str, str]:
    """``"torch:base"`` -> ("torch", "base"); without a known backend prefix: ("auto", spec)."""
    backend, sep, model = spec.partition(":")
    return (backend, model) if sep and backend in BACKENDS else ("auto", spec)


def choose_backend() -> tuple[str, str, str]:
    """(backend, device, why) for ``auto``: the reason is logged so operators see the choice."""
    try:
        import ctranslate2
    except ImportError:
        return "torch", "auto", "CTranslate2 is not installed"
    if ctranslate2.get_cuda_device_count() > 0:
        return "faster-whisper", "cuda", "CTranslate2 can use the GPU"
    if _torch_sees_cuda():
        return "torch", "cuda", "torch sees a GPU but CTranslate2 cannot use it (needs CUDA 12)"
    return "faster-whisper", "cpu", "no CUDA device: CTranslate2 int8 is the fastest on CPU"


def _torch_sees_cuda() -> bool:
    """Whether torch can use a GPU; without NVIDIA's driver it cannot, and importing torch
    to learn that costs seconds on every start."""
    if not Path("/dev/nvidiactl").exists() and not Path("/proc/driver/nvidia").exists():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def make_asr(spec: str = "tiny.en", **options: object) -> ASR:
    """The recognizer for ``[BACKEND:]MODEL``; the torch one is a process-wide batching engine.

    ``options`` go to the backend's constructor (e.g. ``device``, ``compute_type``,
    ``dtype``); the torch engine is shared by every caller asking for the same model.
    """
    backend, model = split_backend(spec)
    if backend == "auto":
        backend, device, why = choose_backend()
        log.info("ASR backend %s on %s for %r: %s", backend, device, model, why)
        options.setdefault("device", device)
        if backend == "faster-whisper" and device == "cuda":
            options.setdefault("compute_type", "float16")
    if backend == "faster-whisper":
        from voicebot.asr.faster_whisper import FasterWhisperASR

        return FasterWhisperASR(model, **options)  # type: ignore[arg-type]
    return _shared_engine(model, options)


def _shared_engine(model: str, options: dict[str, object]) -> ASR:
    """One batching engine per model and options in this process, whoever asks for it."""
    from voicebot.asr.batching import BatchingASR
    from voicebot.asr.torch_whisper import TorchWhisperASR

    key = (model, tuple(sorted(options.items())))
    with _engines_lock:
        if key not in _engines:
            _engines[key] = BatchingASR(TorchWhisperASR(model, **options))  # type: ignore[arg-type]
        return _engines[key]


class DigitTurnsASR:
    """``--digits-asr``: the turns that answer a digit question (``ASRContext.expects`` is
    N digits or a phone number) go to a second, larger recognizer, every other turn to the
    main one. On CPU Whisper base reads digit strings from voices unlike ours markedly
    better than tiny.en, at about twice the wait on those turns only (docs/benchmarks.md)."""

    def __init__(self, main: ASR, digits: ASR) -> None:
        for asr in (main, digits):
            if isinstance(asr, EngineASR):
                raise ASRConfigError(
                    f"--digits-asr needs faster-whisper recognizers; {asr.name!r} is the "
                    "batching engine (give the engine the larger model instead)"
                )
        self.name = f"{main.name}+{digits.name}"
        self.main, self.digits = main, digits

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        digit_turn = context is not None and context.expects.kind in (Expect.DIGITS, Expect.PHONE)
        return (self.digits if digit_turn else self.main).transcribe(audio, context)
