"""Whisper on torch (transformers): the GPU recognizer, and the batched one.

CTranslate2 needs CUDA 12 to use a GPU; torch runs Whisper wherever torch has a device. The
decoding copies faster-whisper's greedy settings (prompt, suppressed tokens, blank
suppression at the first step, no-speech probability from the start-of-transcript position),
so the converted weights give the same transcripts as ``FasterWhisperASR``.

``transcribe_batch`` is what makes one model serve many calls: every clip is a full 30 s
window for the encoder anyway (Whisper's design), so a batch needs no attention mask, and all
clips share the same prompt, so greedy decoding advances them together and a clip's result
does not depend on what it was batched with. Clips heard in different contexts (a digit
question's digit prompt, the pack's vocabulary) share the encoder pass and are decoded in one
group per prompt.

A turn that answers a digit question (``decoding.expects_digits``) is decoded as
``FasterWhisperASR`` decodes it: a beam of five under each digit prompt, pooled, then the
digit-words-only last resort (``decoding.best_fitting``). It runs on its own, not in the
batch (a beam search is five rows per prompt, and such turns are a few per call).
"""

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

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
from voicebot.asr.whisper_decoder import StaticDecoder
from voicebot.errors import ASRDeviceError, ASROutOfMemoryError, VoicebotError
from voicebot.events import Transcript

log = logging.getLogger(__name__)

WHISPER_RATE = 16_000  # Whisper only takes 16 kHz audio
_WINDOW = 30 * WHISPER_RATE  # the encoder's fixed input: 30 s
_HOP = 160  # 10 ms mel frames
_FRAMES = _WINDOW // _HOP
_CUT_SEARCH = 5 * WHISPER_RATE  # long audio is cut at the quietest moment of a window's last 5 s
_MAX_PROMPT_TOKENS = 223  # Whisper's previous-text limit: half its context, less <|startofprev|>
# Not cuDNN attention: it compiles a plan per new (batch, length) shape, hundreds of ms each
# time a batch of a new size arrives (measured on an H100, docs/benchmarks.md).
_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else CPU (logged); an explicit ``cuda`` must exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("torch Whisper runs on CPU: torch sees no CUDA device")
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ASRDeviceError(
            f"ASR device {device!r} requested but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use device 'cpu'"
        )
    return chosen


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """fp16 on CUDA (the weights' own precision), fp32 on CPU where half matmuls are slow."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    chosen = getattr(torch, dtype, None)
    if chosen not in (torch.float16, torch.bfloat16, torch.float32):
        raise ASRDeviceError(f"ASR dtype {dtype!r}: use float16, bfloat16 or float32")
    if chosen is torch.float16 and device.type == "cpu":
        raise ASRDeviceError("ASR dtype float16 needs CUDA; on CPU use float32 or bfloat16")
    return chosen


@dataclass(frozen=True)
class _Decoded:
    """One 30 s window's greedy decoding."""

    text: str
    tokens: int
    sum_logprob: float  # the end-of-text token included, as faster-whisper counts it
    no_speech_prob: float


class TorchWhisperASR:
    """Whisper through transformers with faster-whisper's greedy decoding; thread-safe for
    one caller at a time (the batching engine is that caller when many calls share it)."""

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        device: str = "auto",
        dtype: str = "auto",
        language: str | None = "en",
        max_batch: int = 64,
        cuda_graphs: bool = True,
        guards: GuardConfig | None = None,
    ) -> None:
        from tokenizers import Tokenizer
        from transformers import WhisperForConditionalGeneration
        from transformers.audio_utils import mel_filter_bank
        from transformers.utils import cached_file

        from voicebot.models.convert import torch_model_dir

        self.name = model
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.max_batch = max_batch
        self._guards = guards or GuardConfig()
        source = torch_model_dir(model)
        try:
            self._model = (
                WhisperForConditionalGeneration.from_pretrained(
                    source, dtype=self.dtype, attn_implementation="sdpa"
                )
                .to(self.device)
                .eval()
            )
        except torch.cuda.OutOfMemoryError as exc:
            raise ASRDeviceError(f"Whisper {model!r} does not fit in GPU memory: {exc}") from exc
        self._tokenizer = Tokenizer.from_file(str(cached_file(source, "tokenizer.json")))
        config = self._model.config
        filters = mel_filter_bank(
            num_frequency_bins=201,
            num_mel_filters=config.num_mel_bins,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=WHISPER_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        self._mel_filters = torch.from_numpy(filters.T.astype(np.float32)).to(self.device)
        self._window = torch.hann_window(400, device=self.device)
        self._setup_tokens(language, config)
        never = non_digit_tokens(self._encode, self._tokenizer.decode, self._eot)
        self._digits_only = torch.tensor(
            sorted(never | set(self._suppress.tolist())), device=self.device
        )
        self._prompt_tokens: dict[str, tuple[int, ...]] = {}  # prompt text -> decoder prompt
        self._lock = threading.Lock()  # the GPU runs one batch at a time anyway
        graphs = cuda_graphs and self.device.type == "cuda"
        self._decoder = StaticDecoder(self._model, cuda_graphs=graphs, max_batch=max_batch)
        if graphs:
            self._capture()

    def _capture(self) -> None:
        """Capture the decoder's CUDA graphs at start-up; without them, decode eagerly."""
        frames = self._model.config.max_source_positions
        sample = torch.zeros(1, frames, self._model.config.d_model, dtype=self.dtype)
        try:
            with torch.inference_mode(), sdpa_kernel(_ATTENTION):
                self._decoder.capture_all(sample.to(self.device))
        except RuntimeError as exc:  # a driver or capture limitation: slower, still right
            log.warning("CUDA graph capture failed (%s): decoding without graphs", exc)
            self._decoder = StaticDecoder(self._model, cuda_graphs=False, max_batch=self.max_batch)

    def _setup_tokens(self, language: str | None, config) -> None:
        """The prompt and suppressed tokens faster-whisper uses for untimed transcription."""
        tok = self._tokenizer.token_to_id
        self._eot = tok("<|endoftext|>")
        self._startofprev = tok("<|startofprev|>")
        no_timestamps = tok("<|notimestamps|>")
        self._no_speech = tok("<|nospeech|>") or tok("<|nocaptions|>")
        multilingual = config.vocab_size >= 51865
        self.language = (language or "en") if multilingual else "en"
        language_token = tok(f"<|{self.language}|>")
        if multilingual and language_token is None:
            raise VoicebotError(f"Whisper {self.name!r} does not know language {language!r}")
        self._prompt = [tok("<|startoftranscript|>")]
        if multilingual:
            self._prompt += [language_token, tok("<|transcribe|>")]
        self._prompt.append(no_timestamps)
        control = ("<|transcribe|>", "<|translate|>", "<|startoftranscript|>", "<|startofprev|>")
        suppress = set(self._suppress_tokens(config))
        suppress |= {tok(t) for t in (*control, "<|startoflm|>")} | {self._no_speech}
        suppress |= set(range(no_timestamps + 1, config.vocab_size))  # timestamp tokens
        suppress.discard(None)
        self._suppress = torch.tensor(sorted(suppress), device=self.device)
        # suppress_blank: a transcript may not start with a bare space or end at once
        self._suppress_first = torch.tensor(
            [*self._tokenizer.encode(" ", add_special_tokens=False).ids, self._eot],
            device=self.device,
        )

    def _suppress_tokens(self, config) -> list[int]:
        """Whisper's non-speech tokens (speaker tags, music notes) from the model's config."""
        tokens = config.suppress_tokens or self._model.generation_config.suppress_tokens
        return [t for t in tokens or [] if t >= 0]

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        """One clip, unbatched (the ``ASR`` protocol)."""
        return self.transcribe_batch([audio], [context])[0]

    def transcribe_batch(
        self, audios: list[np.ndarray], contexts: list[ASRContext | None] | None = None
    ) -> list[Transcript]:
        """Transcribe 16 kHz mono float32 clips together, each in its own context (None: a
        plain decode); any length (over 30 s is chunked).

        Raises ASROutOfMemoryError when a batch does not fit: a smaller one may.
        """
        contexts = contexts or [None] * len(audios)
        audios = [np.asarray(a, np.float32).reshape(-1) for a in audios]
        digits = [
            expects_digits(c) and _HOP <= len(a) <= _WINDOW
            for a, c in zip(audios, contexts, strict=True)
        ]
        greedy = iter(
            self._greedy_batch(
                [a for a, d in zip(audios, digits, strict=True) if not d],
                [c for c, d in zip(contexts, digits, strict=True) if not d],
            )
        )
        return [
            self._digit_turn(a, c) if d and c is not None else next(greedy)
            for a, c, d in zip(audios, contexts, digits, strict=True)
        ]

    def _greedy_batch(
        self, audios: list[np.ndarray], contexts: list[ASRContext | None]
    ) -> list[Transcript]:
        """The batched greedy decode of every turn but digit answers."""
        started = time.perf_counter()
        prompts = [prompt_for(c) for c in contexts]
        pieces = [_chunks(a) for a in audios]
        windows: list[np.ndarray] = []
        window_prompts: list[tuple[int, ...]] = []
        for chunks, prompt in zip(pieces, prompts, strict=True):
            for window in chunks:
                if len(window) >= _HOP:
                    windows.append(window)
                    window_prompts.append(self._decoder_prompt(prompt))
        decoded: list[_Decoded] = []
        with self._fitting(f"{len(windows)} windows of audio"):
            for first in range(0, len(windows), self.max_batch):
                batch = slice(first, first + self.max_batch)
                decoded += self._decode(windows[batch], window_prompts[batch])
        compute_s = time.perf_counter() - started
        results, taken = [], 0
        for audio, chunks, prompt in zip(audios, pieces, prompts, strict=True):
            count = sum(len(w) >= _HOP for w in chunks)
            mine, taken = decoded[taken : taken + count], taken + count
            results.append(self._merge(mine, len(audio) / WHISPER_RATE, compute_s, prompt))
        return results

    def _digit_turn(self, audio: np.ndarray, context: ASRContext) -> Transcript:
        """A digit answer of at most 30 s: ``decoding.best_fitting`` over the beams under each
        of DIGIT_PROMPTS, from one encoder pass."""
        started = time.perf_counter()
        audio_s = len(audio) / WHISPER_RATE
        with (
            self._fitting("a digit answer"),
            self._lock,
            torch.inference_mode(),
            sdpa_kernel(_ATTENTION),
        ):
            mel = self._log_mel([audio]).to(self.dtype)
            encoded = self._model.model.encoder(mel).last_hidden_state
            heard = [h for p in DIGIT_PROMPTS for h in self._beam(encoded, p, audio_s)]
            best = best_fitting(
                heard,
                context,
                lambda: self._beam(encoded, DIGIT_PROMPTS[1], audio_s, self._digits_only),
            )
        return judge(
            best.text,
            best.avg_logprob,
            best.no_speech_prob,
            audio_s=audio_s,
            compute_s=time.perf_counter() - started,
            config=self._guards,
            prompt=best.prompt,
        )

    @contextmanager
    def _fitting(self, what: str) -> Iterator[None]:
        """GPU memory running out is ``ASROutOfMemoryError`` (a smaller batch may fit)."""
        try:
            yield
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise ASROutOfMemoryError(f"out of GPU memory decoding {what}: {exc}") from exc

    def _encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _decoder_prompt(self, prompt: str | None) -> tuple[int, ...]:
        """The decoder's start tokens, with ``prompt`` as previous text as faster-whisper puts
        it (``<|startofprev|>`` and the text's last 223 tokens before the transcript's start)."""
        key = prompt or ""
        if key not in self._prompt_tokens:
            previous: list[int] = []
            if prompt:
                text = self._tokenizer.encode(" " + prompt.strip(), add_special_tokens=False)
                previous = [self._startofprev, *text.ids[-_MAX_PROMPT_TOKENS:]]
            self._prompt_tokens[key] = (*previous, *self._prompt)
        return self._prompt_tokens[key]

    def _merge(
        self, windows: list[_Decoded], audio_s: float, compute_s: float, prompt: str | None
    ) -> Transcript:
        """One clip's result from its windows, weighted as ``FasterWhisperASR`` weights segments."""
        if not windows:  # empty or under 10 ms: nothing to hear, no model run
            return judge("", 0.0, 1.0, audio_s=audio_s, compute_s=compute_s, config=self._guards)
        raw = " ".join(w.text for w in windows if w.text).strip()
        avg_logprob = sum(w.sum_logprob for w in windows) / sum(w.tokens + 1 for w in windows)
        no_speech = max(w.no_speech_prob for w in windows)
        return judge(
            raw,
            avg_logprob,
            no_speech,
            audio_s=audio_s,
            compute_s=compute_s,
            config=self._guards,
            prompt=prompt,
        )

    def _decode(self, windows: list[np.ndarray], prompts: list[tuple[int, ...]]) -> list[_Decoded]:
        """Greedy decoding of up to ``max_batch`` windows of at most 30 s each: one encoder
        pass for all, then the windows of each prompt decoded together."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(row)
        results: list[_Decoded | None] = [None] * len(windows)
        with self._lock, torch.inference_mode(), sdpa_kernel(_ATTENTION):
            mel = self._log_mel(windows).to(self.dtype)
            encoded = self._model.model.encoder(mel).last_hidden_state
            for prompt, rows in groups.items():
                index = torch.tensor(rows, device=self.device)
                lengths = [len(windows[row]) for row in rows]
                tokens, sum_logprob, no_speech = self._greedy(encoded[index], lengths, prompt)
                scores = zip(rows, tokens, sum_logprob.tolist(), no_speech.tolist(), strict=True)
                for row, out, total, silent in scores:
                    text_tokens = out[: out.index(self._eot)] if self._eot in out else out
                    text = self._tokenizer.decode(text_tokens).strip()
                    results[row] = _Decoded(text, len(text_tokens), total, silent)
        return [r for r in results if r is not None]

    def _greedy(self, encoded: torch.Tensor, lengths: list[int], prompt: tuple[int, ...]):
        """(tokens per window, summed log-probs, no-speech probabilities) of greedy decoding
        from ``prompt``, for encoder outputs of windows of ``lengths`` samples."""
        model = self._model
        batch = encoded.shape[0]
        cache, logits = self._decoder.prefill(encoded, list(prompt))
        start = len(prompt) - len(self._prompt)  # <|startoftranscript|>: no-speech is read there
        no_speech = logits[:, start].float().softmax(-1)[:, self._no_speech]
        logits = logits[:, -1].float()
        room = model.config.max_target_positions - len(prompt)
        limits = torch.tensor(
            [min(token_budget(n / WHISPER_RATE), room) for n in lengths], device=self.device
        )
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        sum_logprob = torch.zeros(batch, device=self.device)
        steps: list[torch.Tensor] = []
        while True:
            logits[:, self._suppress] = -math.inf
            if not steps:
                logits[:, self._suppress_first] = -math.inf
            logprobs = logits.log_softmax(-1)
            token = logprobs.argmax(-1)
            sum_logprob += torch.where(done, 0.0, logprobs.gather(1, token[:, None])[:, 0])
            token = torch.where(done, self._eot, token)
            steps.append(token)
            done |= (token == self._eot) | (len(steps) >= limits)
            if bool(done.all()):
                break
            position = len(prompt) + len(steps) - 1
            logits = self._decoder.step(cache, token, position).float()
        return torch.stack(steps, 1).tolist(), sum_logprob, no_speech

    def _beam(
        self,
        encoded: torch.Tensor,
        prompt_text: str,
        audio_s: float,
        suppress: torch.Tensor | None = None,
    ) -> list[Hypothesis]:
        """The DIGIT_HYPOTHESES-best of a beam search over one window's encoder output
        ``[1, frames, dim]``, ranked by faster-whisper's average log-prob (CTranslate2's
        length penalty of 1). The beams are rows of the decoder's cache, reordered each step.
        ``suppress``: the tokens never written (default: those of every decode)."""
        width = DIGIT_HYPOTHESES
        suppress = self._suppress if suppress is None else suppress
        prompt = self._decoder_prompt(prompt_text)
        cache, logits = self._decoder.prefill(encoded.expand(width, -1, -1), list(prompt))
        start = len(prompt) - len(self._prompt)  # <|startoftranscript|>: no-speech is read there
        no_speech = float(logits[0, start].float().softmax(-1)[self._no_speech])
        logits = logits[:, -1].float()
        room = self._model.config.max_target_positions - len(prompt)
        scores = torch.full((width,), -math.inf, device=self.device)
        scores[0] = 0.0  # the rows start equal: one live beam
        beams: list[list[int]] = [[] for _ in range(width)]
        finished: list[tuple[list[int], float]] = []
        for step in range(min(token_budget(audio_s), room)):
            logits[:, suppress] = -math.inf
            if step == 0:
                logits[:, self._suppress_first] = -math.inf
            total = scores[:, None] + logits.log_softmax(-1)
            values, indices = total.view(-1).topk(2 * width)
            alive: list[tuple[int, int, float]] = []
            for value, index in zip(values.tolist(), indices.tolist(), strict=True):
                if value == -math.inf or len(alive) == width:
                    break
                beam, token = divmod(index, total.shape[1])
                if token == self._eot:
                    finished.append((beams[beam], value))
                else:
                    alive.append((beam, token, value))
            if len(finished) >= width or not alive:
                break
            alive += [(alive[0][0], alive[0][1], -math.inf)] * (width - len(alive))
            origin = torch.tensor([beam for beam, _, _ in alive], device=self.device)
            for kv in (cache.self_k, cache.self_v):
                kv[:, :width] = kv[:, origin]
            beams = [beams[beam] + [token] for beam, token, _ in alive]
            scores = torch.tensor([value for *_, value in alive], device=self.device)
            tokens = torch.tensor([token for _, token, _ in alive], device=self.device)
            logits = self._decoder.step(cache, tokens, len(prompt) + step).float()
        else:  # out of tokens: the live beams are what there is
            live = zip(beams, scores.tolist(), strict=True)
            finished += [(tokens, score) for tokens, score in live if score > -math.inf]
        hypotheses = [
            Hypothesis(
                self._tokenizer.decode(tokens).strip(),
                total_logprob / (len(tokens) + 1),
                no_speech,
                prompt_text,
            )
            for tokens, total_logprob in finished
        ]
        return sorted(hypotheses, key=lambda h: h.avg_logprob, reverse=True)[:width]

    def _log_mel(self, windows: list[np.ndarray]) -> torch.Tensor:
        """Whisper's log-mel features as faster-whisper computes them, for a batch at once.

        Per clip: 160 zero samples appended, the clip's own maximum sets the 80 dB floor, and
        frames past its end are zero (faster-whisper pads the features, not the audio), so a
        clip's features do not depend on the clips batched with it.
        """
        longest = max(len(w) for w in windows) + _HOP
        audio = torch.zeros(len(windows), longest)
        for row, window in zip(audio, windows, strict=True):
            row[: len(window)] = torch.from_numpy(window)
        audio = audio.to(self.device, non_blocking=True)
        stft = torch.stft(audio, 400, _HOP, window=self._window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = (self._mel_filters @ power).clamp(min=1e-10).log10()
        frames = torch.tensor([len(w) // _HOP for w in windows], device=self.device)
        valid = torch.arange(mel.shape[-1], device=self.device) < frames[:, None]
        peak = mel.masked_fill(~valid[:, None], -math.inf).amax(dim=(1, 2), keepdim=True)
        mel = (torch.maximum(mel, peak - 8.0) + 4.0) / 4.0
        mel = mel.masked_fill(~valid[:, None], 0.0)[..., :_FRAMES]
        return torch.nn.functional.pad(mel, (0, _FRAMES - mel.shape[-1]))


def _chunks(audio: np.ndarray) -> list[np.ndarray]:
    """Windows of at most 30 s, each long one cut at the quietest 20 ms of its last 5 s so a
    word is rarely split in two."""
    pieces, start = [], 0
    while len(audio) - start > _WINDOW:
        tail = audio[start + _WINDOW - _CUT_SEARCH : start + _WINDOW]
        energy = (tail.reshape(-1, 320) ** 2).sum(axis=1)
        cut = start + _WINDOW - _CUT_SEARCH + int(np.argmin(energy)) * 320
        pieces.append(audio[start:cut])
        start = cut
    pieces.append(audio[start:])
    return pieces
