"""Synthetic caller voices for tests, demos and evals, distinct from the bot's own voice.

A caller voice is the Piper voice shifted in pitch and tempo (played back at another rate)
and then passed through a telephone channel, so the recognizer never hears exactly the
voice the bot speaks with.
"""

from dataclasses import dataclass

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import pcm16_to_float
from voicebot.audio.resample import resample
from voicebot.audio.telephone import telephone_channel
from voicebot.tts.base import TTS


@dataclass(frozen=True)
class CallerVoice:
    name: str
    pitch: float  # playback-rate factor: < 1 is lower and slower, > 1 higher and faster


CALLER_VOICES = {
    v.name: v
    for v in (CallerVoice("low", 0.88), CallerVoice("high", 1.12), CallerVoice("bot", 1.0))
}


def render_caller(
    tts: TTS, text: str, *, voice: str = "low", codec: str = "mulaw", snr_db: float | None = None
) -> np.ndarray:
    """Speak ``text`` as a caller on a phone line: 16 kHz mono float32."""
    if voice not in CALLER_VOICES:
        raise ValueError(
            f"unknown caller voice {voice!r}; choose one of {', '.join(CALLER_VOICES)}"
        )
    audio = np.concatenate([pcm16_to_float(c.pcm) for c in tts.synthesize(text)])
    # Resampling as if recorded at pitch * rate, then playing at rate, shifts pitch and tempo.
    shifted = resample(audio, round(SAMPLE_RATE * CALLER_VOICES[voice].pitch), SAMPLE_RATE)
    return telephone_channel(shifted, codec=codec, snr_db=snr_db)
