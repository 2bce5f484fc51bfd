"""Speech synthesis stage."""

from voicebot.tts.base import TTS

__all__ = ["TTS", "make_tts"]


def make_tts(voice: str = "joe", **options: object) -> TTS:
    """The default synthesizer: Piper with the packaged voice (or a voice path)."""
    from voicebot.tts.piper import PiperTTS

    return PiperTTS(voice, **options)  # type: ignore[arg-type]
