"""`voicebot eval asr`: WER, CER and real-time factor, offline and through the live-call path.

Two ways to recognize the same recording, so a change can be judged against both:

- ``offline``: plain faster-whisper on the whole file, as anyone would run it (library
  defaults: beam search, temperature fallback, timestamps), with the same weights and int8
  compute as the bot. The reference point "what does this model do on this audio".
- ``streaming``: the audio plays into a real ``CallSession`` as a caller would speak it, in
  20 ms frames: VAD, endpointer, partials, speculative finals, hallucination guards. The
  hypothesis is what the bot heard: its final caller turns, in order. Its real-time factor
  counts every recognition the call ran (partials and speculations included).

Streaming WER above offline WER is what turn-taking costs (words cut at turn boundaries,
guards dropping real speech, greedy decoding); the report puts them side by side.
"""

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from voicebot.asr import make_asr
from voicebot.asr.base import ASR, ASRContext
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.io import load_audio
from voicebot.errors import AudioInputError
from voicebot.eval.manifest import Issue, read_jsonl
from voicebot.eval.normalize import normalize
from voicebot.eval.report import finish, grouped_bars, markdown_table, plot_path, write_markdown
from voicebot.eval.wer import Errors, char_errors, total, word_errors
from voicebot.events import CallerTurn, Reply, SpeechChunk, Transcript
from voicebot.models import resolve_asr
from voicebot.pipeline.record import CallRecord
from voicebot.pipeline.scheduler import Scheduler
from voicebot.pipeline.session import CallSession
from voicebot.pipeline.workers import PriorityWorkers
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.vad import DEFAULT_VAD, make_vad

MODES = ("offline", "streaming")
# Silence after the recording, at most (a hang guard): the call ends when the listener hears
# silence with every final transcript in (its no-input timeout), however long the
# recognizer took; a fixed tail lost the last turns on a busy machine.
_TAIL_S = 60.0


@dataclass(frozen=True)
class Hypothesis:
    text: str
    compute_s: float  # recognizer compute spent on this item
    turns: int = 1  # caller turns the call heard (streaming)
    dropped: tuple[str, ...] = ()  # transcripts the guards refused (streaming): "reason: text"


class PlainWhisper:
    """faster-whisper with its library defaults over a whole file (the offline reference)."""

    def __init__(self, model: str) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            resolve_asr(model),
            device="cpu",
            compute_type="int8",
            cpu_threads=min(os.cpu_count() or 1, 8),
        )
        self._language = "en" if self._model.model.is_multilingual else None

    def recognize(self, audio: np.ndarray) -> Hypothesis:
        started = time.perf_counter()
        segments, _ = self._model.transcribe(audio, language=self._language)
        text = " ".join(s.text.strip() for s in segments).strip()
        return Hypothesis(text, time.perf_counter() - started)


class _MeteredASR:
    """Counts the compute of every recognition a call runs (worker threads, hence the lock)."""

    def __init__(self, asr: ASR) -> None:
        self.name = asr.name
        self._asr = asr
        self._lock = threading.Lock()
        self.compute_s = 0.0

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        result = self._asr.transcribe(audio, context)
        with self._lock:
            self.compute_s += result.compute_s
        return result


class _Listener:
    """A dialog that only listens: the call records what it heard and never answers."""

    def greet(self) -> Reply:
        return Reply("", kind="greeting")

    def respond(self, turn: CallerTurn) -> Reply:
        return Reply("", kind="answer")

    def not_understood(self, turn: CallerTurn) -> Reply:
        return Reply("", kind="fallback")

    def no_input(self) -> Reply:
        return Reply("", kind="farewell", end_call=True)  # the recording is over


class _Mute:
    """A TTS that says nothing (the listener never has words to say)."""

    name = "mute"

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        return iter(())


class StreamingRecognizer:
    """The live-call path: a ``CallSession`` per recording, fed 20 ms frames (fast clock)."""

    def __init__(
        self, model: str, vad: str = DEFAULT_VAD, vocabulary: tuple[str, ...] = ()
    ) -> None:
        self._asr = make_asr(model)
        self._vad = vad
        self._vocabulary = vocabulary  # a pack's recognizer vocabulary: the call's biasing
        self._workers = PriorityWorkers(2, "eval-asr")  # as a Bot's: partials yield to finals
        self._asr.transcribe(np.zeros(SAMPLE_RATE, np.float32))  # warm-up, as the bot does

    def recognize(self, audio: np.ndarray) -> Hypothesis:
        metered = _MeteredASR(self._asr)
        record = asyncio.run(self._call(metered, audio))
        heard = sorted((t for t in record.turns if t.role == "caller"), key=lambda t: t.start)
        text = " ".join(t.text for t in heard if not t.dropped and t.text)
        dropped = tuple(
            f"{t.dropped}: {t.asr['raw_text'] if t.asr else ''}" for t in heard if t.dropped
        )
        return Hypothesis(text, metered.compute_s, len(heard), dropped)

    async def _call(self, asr: _MeteredASR, audio: np.ndarray) -> CallRecord:
        session = CallSession(
            asr=asr,
            tts=_Mute(),
            vad=make_vad(self._vad),
            dialog=_Listener(),
            scheduler=Scheduler(self._workers, realtime=False),
            record=CallRecord(pack="-", asr_model=asr.name, tts_voice="mute"),
            vocabulary=self._vocabulary,
        )
        caller = SimulatedCaller([CallerSegment(audio, Cue.CALL_START, 0.5)], tail_s=_TAIL_S)
        return await session.run(caller)

    def close(self) -> None:
        self._workers.shutdown()


def evaluate_asr(
    manifest: Path,
    report_path: Path,
    *,
    model: str = "tiny.en",
    modes: tuple[str, ...] = MODES,
    vad: str = DEFAULT_VAD,
    vocabulary: tuple[str, ...] = (),
) -> dict:
    """Recognize every manifest line in each mode; bad lines and unreadable audio are issues.
    ``vocabulary`` biases the streaming mode as a pack's calls are (offline stays plain)."""
    entries, issues = read_jsonl(manifest, ("audio", "text"))
    recognizers = {
        mode: PlainWhisper(model)
        if mode == "offline"
        else StreamingRecognizer(model, vad, vocabulary)
        for mode in modes
    }
    items: list[dict] = []
    try:
        for entry in tqdm(entries, desc=f"asr {model}", unit="utt", leave=False):
            where = f"{manifest}:{entry.line}"
            reference = normalize(entry.data["text"])
            if not reference:
                issues.append(Issue(where, "the reference is empty once normalized"))
                continue
            try:
                audio = load_audio(manifest.parent / entry.data["audio"])
            except AudioInputError as exc:
                issues.append(Issue(where, str(exc)))
                continue
            item = {**entry.data, "line": entry.line, "audio_s": round(len(audio) / SAMPLE_RATE, 3)}
            item["reference_normalized"] = reference
            for mode, recognizer in recognizers.items():
                item[mode] = _score(reference, recognizer.recognize(audio))
            items.append(item)
    finally:
        for recognizer in recognizers.values():
            if isinstance(recognizer, StreamingRecognizer):
                recognizer.close()
    report = _summary(items, modes)
    report.update(model=model, vad=vad, manifest=str(manifest), vocabulary=list(vocabulary))
    return finish(report_path, report, issues, items, _write_markdown)


def _score(reference: str, hypothesis: Hypothesis) -> dict:
    hyp = normalize(hypothesis.text)
    out = {
        "text": hypothesis.text,
        "normalized": hyp,
        "words": word_errors(reference, hyp).to_dict(),
        "chars": char_errors(reference, hyp).to_dict(),
        "compute_s": round(hypothesis.compute_s, 4),
    }
    if hypothesis.turns != 1 or hypothesis.dropped:
        out.update(turns=hypothesis.turns, dropped=list(hypothesis.dropped))
    return out


def _summary(items: list[dict], modes: tuple[str, ...]) -> dict:
    """Contract keys (n, audio_s, wer, cer, rtf) for the primary mode, and every mode apart."""
    audio_s = sum(i["audio_s"] for i in items)
    per_mode = {}
    for mode in modes:
        words = total([_errors(i[mode]["words"]) for i in items])
        chars = total([_errors(i[mode]["chars"]) for i in items])
        compute = sum(i[mode]["compute_s"] for i in items)
        per_mode[mode] = {
            "wer": words.rate if items else 0.0,
            "cer": chars.rate if items else 0.0,
            "rtf": compute / audio_s if audio_s else 0.0,
            "substitutions": words.substitutions,
            "deletions": words.deletions,
            "insertions": words.insertions,
            "reference_words": words.length,
        }
    primary = "streaming" if "streaming" in modes else modes[0]
    report = {"n": len(items), "audio_s": round(audio_s, 3), "mode": primary}
    report |= {k: per_mode[primary][k] for k in ("wer", "cer", "rtf")}
    report["modes"] = per_mode
    if len(modes) == 2:
        report["streaming_wer_minus_offline"] = (
            per_mode["streaming"]["wer"] - per_mode["offline"]["wer"]
        )
    return report


def _errors(counts: dict) -> Errors:
    return Errors(
        counts["substitutions"], counts["deletions"], counts["insertions"], counts["length"]
    )


def _write_markdown(report_path: Path, report: dict) -> None:
    modes = list(report["modes"])
    labels = [Path(i["audio"]).stem for i in report["items"]]
    chart = grouped_bars(
        plot_path(report_path, "wer"),
        labels,
        {m: [i[m]["words"]["rate"] for i in report["items"]] for m in modes},
        "WER per item",
    )
    summary = [
        [m, s["wer"], s["cer"], s["rtf"], s["substitutions"], s["deletions"], s["insertions"]]
        for m, s in report["modes"].items()
    ]
    rows = [
        [i["line"], labels[k], i["reference_normalized"]]
        + [f"{i[m]['normalized']} ({i[m]['words']['rate']:.2f})" for m in modes]
        for k, i in enumerate(report["items"])
    ]
    write_markdown(
        report_path,
        [
            f"# ASR eval: {report['model']}",
            f"Manifest `{report['manifest']}`: {report['n']} utterances, "
            f"{report['audio_s']:.1f} s of audio, {report['failures']} lines not evaluated. "
            "Texts normalized as in `voicebot/eval/normalize.py`.",
            markdown_table(["mode", "WER", "CER", "RTF", "sub", "del", "ins"], summary),
            f"![WER per item]({chart.name})",
            "## Items (normalized reference, then each mode's hypothesis and WER)",
            markdown_table(["line", "audio", "reference", *modes], rows),
        ],
        report["issues"],
    )
