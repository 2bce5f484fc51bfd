"""faster-whisper (CTranslate2): the CPU recognizer, int8 by default."""

import os
import time

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from voicebot.asr.base import ASRContext
from voicebot.asr.decoding import (
    DIGIT_HYPOTHESES,
    DIGIT_PROMPTS,
    Hypothesis,
    best_fitting,
    expects_digits,
    non_digit_tokens,
    prompt_for,
    token_budget,
)
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
        digit_hypotheses: int = DIGIT_HYPOTHESES,
        guards: GuardConfig | None = None,
    ) -> None:
        """``digit_hypotheses``: beam width and alternatives read when the question expects
        a number of digits (1: the greedy decode of every other turn)."""
        self.name = model
        # One thread per core: CTranslate2's default (4) oversubscribes small machines and
        # measured 14% slower on 2 cores (docs/benchmarks.md).
        threads = cpu_threads if cpu_threads is not None else min(os.cpu_count() or 1, 8)
        self._model = WhisperModel(
            resolve_asr(model), device=device, compute_type=compute_type, cpu_threads=threads
        )
        multilingual = self._model.model.is_multilingual
        self._language = language if multilingual else "en"
        self._beam_size = beam_size
        self._digit_hypotheses = digit_hypotheses
        self._guards = guards or GuardConfig()
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer, multilingual, "transcribe", self._language
        )
        # The same for every digit turn: each prompt's decoder start, the tokens never emitted.
        self._digit_starts = [
            (
                prompt,
                self._model.get_prompt(
                    self._tokenizer, self._tokenizer.encode(" " + prompt), without_timestamps=True
                ),
            )
            for prompt in DIGIT_PROMPTS
        ]
        self._suppressed = get_suppressed_tokens(self._tokenizer, [-1])
        self._digits_only = self._non_digit_tokens() if digit_hypotheses > 1 else []

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        started = time.perf_counter()
        audio_s = len(audio) / SAMPLE_RATE
        if expects_digits(context) and self._digit_hypotheses > 1:
            raw, avg_logprob, no_speech, prompt = self._best_fitting(audio, audio_s, context)
        else:
            prompt = prompt_for(context)
            raw, avg_logprob, no_speech = self._greedy(audio, audio_s, prompt)
        return judge(
            raw,
            avg_logprob,
            no_speech,
            audio_s=audio_s,
            compute_s=time.perf_counter() - started,
            config=self._guards,
            prompt=prompt,
        )

    def _greedy(
        self, audio: np.ndarray, audio_s: float, prompt: str | None
    ) -> tuple[str, float, float]:
        """(text, avg log-prob, no-speech prob) of faster-whisper's own decode."""
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
        return raw, avg_logprob, max((s.no_speech_prob for s in segments), default=1.0)

    def _best_fitting(self, audio: np.ndarray, audio_s: float, context: ASRContext) -> Hypothesis:
        """``decoding.best_fitting`` over the beams under each of DIGIT_PROMPTS, from one
        encoder pass."""
        features = self._model.feature_extractor(audio)
        # The first 30 s, cut as transcribe() cuts it (a digit answer is a few seconds).
        encoded = self._model.encode(pad_or_trim(features[:, : features.shape[-1] - 1]))
        heard = [
            h
            for prompt, tokens in self._digit_starts
            for h in self._generate(encoded, prompt, tokens, audio_s, self._suppressed)
        ]
        return best_fitting(
            heard,
            context,
            lambda: self._generate(encoded, *self._digit_starts[1], audio_s, self._digits_only),
        )

    def _generate(
        self,
        encoded: ctranslate2.StorageView,
        prompt: str,
        tokens: list[int],
        audio_s: float,
        suppressed: list[int],
    ) -> list[Hypothesis]:
        """The n-best of one beam search from ``tokens`` (a prompt's decoder start)."""
        width = self._digit_hypotheses
        result = self._model.model.generate(
            encoded,
            [tokens],
            beam_size=width,
            num_hypotheses=width,
            max_length=len(tokens) + token_budget(audio_s),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppressed,
        )[0]
        return [
            # faster-whisper's average log-prob: the score is length-normalized (penalty 1)
            Hypothesis(
                self._tokenizer.decode(ids).strip(),
                float(score * len(ids) / (len(ids) + 1)),
                float(result.no_speech_prob),
                prompt,
            )
            for ids, score in zip(result.sequences_ids, result.scores, strict=True)
        ]

    def _non_digit_tokens(self) -> list[int]:
        """What the last-resort digit decode suppresses (``decoding.non_digit_tokens``)."""
        tokenizer = self._tokenizer
        never = non_digit_tokens(tokenizer.encode, tokenizer.decode, tokenizer.eot)
        return sorted(never | {t for t in self._suppressed if t >= 0})
