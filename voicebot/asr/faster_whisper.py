"""faster-whisper (CTranslate2): the CPU recognizer, int8 by default."""

import os
import time

import numpy as np
from faster_whisper import WhisperModel

from voicebot.asr.base import ASRContext
from voicebot.asr.decoding import prompt_for, token_budget
from voicebot.asr.guards import GuardConfig, judge
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.events import Transcript
from voicebot.models import resolve_asr


class FasterWhisperASR:
    """Whisper through faster-whisper, tuned for short telephone turns.

    Greedy decoding without timestamps or temperature fallback keeps latency flat; the
    hallucination guards in ``voicebot.asr.guards`` replace the fallback's safety net.
    """

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int | None = None,
        language: str | None = "en",
        beam_size: int = 1,
        guards: GuardConfig | None = None,
    ) -> None:
        self.name = model
        # One thread per core: CTranslate2's default (4) oversubscribes small machines and
        # measured 14% slower on 2 cores (docs/benchmarks.md).
        threads = cpu_threads if cpu_threads is not None else min(os.cpu_count() or 1, 8)
        self._model = WhisperModel(
            resolve_asr(model), device=device, compute_type=compute_type, cpu_threads=threads
        )
        self._language = language if self._model.model.is_multilingual else "en"
        self._beam_size = beam_size
        self._guards = guards or GuardConfig()

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        started = time.perf_counter()
        audio_s = len(audio) / SAMPLE_RATE
        prompt = prompt_for(context)
        segments, _ = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            initial_prompt=prompt,
            max_new_tokens=token_budget(min(audio_s, 30.0)),
            # Our guards decide on the raw output, so faster-whisper must not filter first.
            no_speech_threshold=None,
            log_prob_threshold=None,
            compression_ratio_threshold=None,
        )
        segments = list(segments)
        raw = " ".join(s.text.strip() for s in segments).strip()
        tokens = [max(len(s.tokens), 1) for s in segments]
        avg_logprob = (
            float(np.average([s.avg_logprob for s in segments], weights=tokens))
            if segments
            else 0.0
        )
        no_speech = max((s.no_speech_prob for s in segments), default=1.0)
        return judge(
            raw,
            avg_logprob,
            no_speech,
            audio_s=audio_s,
            compute_s=time.perf_counter() - started,
            config=self._guards,
            prompt=prompt,
        )
