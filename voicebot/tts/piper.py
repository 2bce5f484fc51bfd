"""Piper neural TTS (ONNX), the default voice is the packaged en_US "joe"."""

from collections.abc import Iterator

import numpy as np
from piper import PiperVoice, SynthesisConfig

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import float_to_pcm16
from voicebot.audio.resample import resample
from voicebot.events import SpeechChunk
from voicebot.models import resolve_piper_voice
from voicebot.tts.sentences import split_sentences


class PiperTTS:
    """Synthesizes sentence by sentence and resamples once to the pipeline rate."""

    def __init__(
        self, voice: str = "joe", *, length_scale: float | None = None, deterministic: bool = False
    ) -> None:
        """``deterministic`` turns off the model's sampling noise (its graph draws unseeded
        random numbers), so the same text always gives the same audio: what tests and evals
        need for caller audio. A touch flatter; the bot's own voice keeps the noise."""
        onnx_path, config_path = resolve_piper_voice(voice)
        self.name = voice
        self._voice = PiperVoice.load(onnx_path, config_path=config_path)
        noise = 0.0 if deterministic else None
        # 0.9 leaves headroom: Piper peak-normalizes and resampling can overshoot.
        self._config = SynthesisConfig(
            length_scale=length_scale, noise_scale=noise, noise_w_scale=noise, volume=0.9
        )
        self.native_rate = self._voice.config.sample_rate

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in split_sentences(text):
            audio = [c.audio_float_array for c in self._voice.synthesize(sentence, self._config)]
            if not audio:
                continue
            native = np.concatenate(audio)
            yield SpeechChunk(
                text=sentence, pcm=float_to_pcm16(resample(native, self.native_rate, SAMPLE_RATE))
            )
