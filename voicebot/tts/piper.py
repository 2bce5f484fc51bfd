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
        first = True
        for sentence in split_sentences(text):
            audio = [c.audio_float_array for c in self._voice.synthesize(sentence, self._config)]
            if not audio:
                continue
            native = np.concatenate(audio)
            if first:  # the caller is waiting for this one: no dead air before the voice
                native, first = trim_leading_silence(native, self.native_rate), False
            yield SpeechChunk(
                text=sentence, pcm=float_to_pcm16(resample(native, self.native_rate, SAMPLE_RATE))
            )


_SILENT = 10 ** (-50 / 20)  # -50 dBFS: below the voice, above Piper's numeric noise
_KEEP_S = 0.01  # the onset itself must not be clipped


def trim_leading_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """Drop the silence Piper puts before the first word (40-60 ms), keeping 10 ms."""
    loud = np.flatnonzero(np.abs(audio) > _SILENT)
    if not len(loud):
        return audio
    return audio[max(0, int(loud[0]) - round(_KEEP_S * rate)) :]
