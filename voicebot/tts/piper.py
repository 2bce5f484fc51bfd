"""Piper neural TTS (ONNX), the default voice is the packaged en_US "joe"."""

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import float_to_pcm16
from voicebot.audio.resample import resample
from voicebot.events import SpeechChunk
from voicebot.models import resolve_piper_voice
from voicebot.tts.sentences import split_sentences

PROMPT_CACHE_MB = 16.0  # ~8 min of 16 kHz speech: a pack's fixed prompts many times over


class PiperTTS:
    """Synthesizes sentence by sentence and resamples once to the pipeline rate."""

    def __init__(
        self,
        voice: str = "joe",
        *,
        length_scale: float | None = None,
        deterministic: bool = False,
        cache_mb: float = PROMPT_CACHE_MB,
    ) -> None:
        """``deterministic`` turns off the model's sampling noise (its graph draws unseeded
        random numbers), so the same text always gives the same audio: what tests and evals
        need for caller audio. A touch flatter; the bot's own voice keeps the noise.
        ``cache_mb`` bounds the audio kept of sentences said before (0: none)."""
        onnx_path, config_path = resolve_piper_voice(voice)
        self.name = voice
        self._voice = _load(onnx_path, config_path)
        noise = 0.0 if deterministic else None
        # 0.9 leaves headroom: Piper peak-normalizes and resampling can overshoot.
        self._config = SynthesisConfig(
            length_scale=length_scale, noise_scale=noise, noise_w_scale=noise, volume=0.9
        )
        self.native_rate = self._voice.config.sample_rate
        self._cache = _PromptCache(int(cache_mb * 2**20))

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        first = True
        for sentence in split_sentences(text):
            pcm = self._cache.get(sentence, first)
            if pcm is None:
                pcm = self._sentence(sentence, first)
                self._cache.put(sentence, first, pcm)
            if not len(pcm):
                continue
            first = False
            yield SpeechChunk(text=sentence, pcm=pcm)

    def _sentence(self, sentence: str, first: bool) -> np.ndarray:
        audio = [c.audio_float_array for c in self._voice.synthesize(sentence, self._config)]
        if not audio:
            return np.zeros(0, np.int16)
        native = np.concatenate(audio)
        if first:  # the caller is waiting for this one: no dead air before the voice
            native = trim_leading_silence(native, self.native_rate)
        return float_to_pcm16(resample(native, self.native_rate, SAMPLE_RATE))


def _load(onnx_path: Path, config_path: Path) -> PiperVoice:
    """``PiperVoice.load`` without onnxruntime's memory arena. The arena keeps the most
    memory that runs at once ever needed: six calls speaking together grew a server by
    ~500 MB that one call speaking never gave back (scripts/bench_faults.py, "memory"). Without
    it each run frees what it used, at no measured cost in synthesis time."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
    session = ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=config)


class _PromptCache:
    """The audio of sentences said before, least recently used out first, up to a byte
    budget. A call center's bot says the same greeting, questions and transfer message all
    day: from memory they start at once and cost no CPU (a quarter of a call's compute
    here). Sentences with digits are never kept: they carry amounts, last fours, dates."""

    def __init__(self, budget: int) -> None:
        self._budget, self._used = budget, 0
        self._audio: OrderedDict[tuple[str, bool], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # calls synthesize from several worker threads

    def get(self, sentence: str, first: bool) -> np.ndarray | None:
        with self._lock:
            pcm = self._audio.get((sentence, first))
            if pcm is not None:
                self._audio.move_to_end((sentence, first))
            return pcm

    def put(self, sentence: str, first: bool, pcm: np.ndarray) -> None:
        if any(c.isdigit() for c in sentence) or pcm.nbytes > self._budget:
            return
        pcm.flags.writeable = False  # shared by every call that says it
        with self._lock:
            if (sentence, first) in self._audio:
                return
            self._audio[(sentence, first)] = pcm
            self._used += pcm.nbytes
            while self._used > self._budget:
                _, dropped = self._audio.popitem(last=False)
                self._used -= dropped.nbytes


_SILENT = 10 ** (-50 / 20)  # -50 dBFS: below the voice, above Piper's numeric noise
_KEEP_S = 0.01  # the onset itself must not be clipped


def trim_leading_silence(audio: np.ndarray, rate: int) -> np.ndarray:
    """Drop the silence Piper puts before the first word (40-60 ms), keeping 10 ms."""
    loud = np.flatnonzero(np.abs(audio) > _SILENT)
    if not len(loud):
        return audio
    return audio[max(0, int(loud[0]) - round(_KEEP_S * rate)) :]
