"""Speech recognition stage."""

from voicebot.asr.base import ASR
from voicebot.asr.guards import GuardConfig

__all__ = ["ASR", "GuardConfig", "make_asr"]


def make_asr(model: str = "tiny.en", **options: object) -> ASR:
    """The default recognizer: faster-whisper on CPU (int8)."""
    from voicebot.asr.faster_whisper import FasterWhisperASR

    return FasterWhisperASR(model, **options)  # type: ignore[arg-type]
