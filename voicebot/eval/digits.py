"""`voicebot eval digits`: can verification and actions rely on the digits the bot hears?

Each manifest line is a digit string a caller reads out, and how they say it:

    {"kind": "zip", "digits": "10001", "say": "one oh oh oh one"}
    {"kind": "phone", "digits": "5551230001", "say": "five five five | one two three | ..."}

``kind`` is ``zip`` (5 digits, the verification answer), ``last_four`` (a card's last four),
``phone`` (10 to 15 digits) or ``card`` (a whole card number); ``say`` writes "oh",
"double", pairs ("forty five sixty seven") and groups, ``|`` being a pause between groups
(``pause_s``, 0.35 s by default: shorter than the endpointer's silence timeout, as people
pause between groups). A line may give recorded ``audio`` instead (voice ``recorded``).

Every line is spoken by every voice of ``--voices`` (``voicebot.tts.caller_voice``), passed
through the phone line (``--line``), and played into a real ``CallSession`` whose open
question expects that answer, so the recognizer decodes it in the context the dialog would
give it. The digits are read from what the bot heard exactly as the dialog reads them
(``voicebot.dialog.slots.parse_digit_slot``). The headline is exact match per string;
the report breaks it down by voice, voice family and kind, with the digit error rate
(edit distance over the digits) and the recognizer's real-time factor beside it.

Each means of getting digits right can be measured: ``--plain-decode`` (no digit-biased
decode), ``--digits-asr MODEL`` (a second recognizer for digit turns), and the expected
length, from the same decode: ``exact_match_without_length`` reads every answer as if its
length were not known.
"""

import asyncio
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jiwer import process_characters
from tqdm import tqdm

from voicebot.asr import DigitTurnsASR, make_asr
from voicebot.asr.base import ASR, ASRContext
from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.io import load_audio
from voicebot.audio.telephone import LineCondition, line
from voicebot.dialog.slots import parse_digit_slot
from voicebot.errors import AudioInputError, CallerAudioError, EvalInputError
from voicebot.eval.manifest import Entry, Issue, read_jsonl
from voicebot.eval.report import finish, grouped_bars, markdown_table, plot_path, write_markdown
from voicebot.events import CallerTurn, Expect, Expectation, Reply, SpeechChunk, Transcript
from voicebot.pipeline.record import CallRecord
from voicebot.pipeline.scheduler import Scheduler
from voicebot.pipeline.session import CallConfig, CallSession
from voicebot.pipeline.workers import PriorityWorkers
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.tts.caller_voice import CALLER_VOICES, CallerRenderer
from voicebot.vad import DEFAULT_VAD, make_vad

# kind -> (the slot type the dialog reads it as, the expectation its question sets)
KINDS: dict[str, tuple[str, Expectation]] = {
    "zip": ("digits", Expectation(Expect.DIGITS, 5, "verification", sensitive=True)),
    "last_four": ("card_last_four", Expectation(Expect.DIGITS, 4, "card_last_four")),
    "phone": ("phone", Expectation(Expect.PHONE, None, "phone", sensitive=True)),
    "card": ("digits", Expectation(Expect.DIGITS, 16, "card_number", sensitive=True)),
}
# Two voices of every family: the bot's own shifted, and five engines unlike it.
DEFAULT_VOICES = (
    "piper-low", "piper-high", "espeak-us", "espeak-gb-m3", "mbrola-us1", "mbrola-us3",
    "flite-kal16", "flite-slt", "festival-kal", "festival-slt", "pico-us", "pico-gb",
)  # fmt: skip
PAUSE_S = 0.35
_LEAD_S = 0.3  # the caller starts answering this long after the question
# The caller stays on the line this long at most after answering (a hang guard): the call
# ends when the dialog hears silence after the answer (its no-input timeout).
_HANG_UP_S = 60.0


@dataclass(frozen=True)
class DigitOptions:
    asr: str = "tiny.en"
    digits_asr: str | None = None  # a second recognizer for digit turns only
    biased: bool = True  # the digit-biased decode a digit question gets (False: a plain one)
    voices: tuple[str, ...] = DEFAULT_VOICES
    line: str = "mulaw"
    vad: str = DEFAULT_VAD


class _Counted:
    """A call's recognizer, counting the compute of every recognition (worker threads,
    hence the lock)."""

    def __init__(self, asr: ASR) -> None:
        self.name, self._asr = asr.name, asr
        self._lock = threading.Lock()
        self.compute_s = 0.0

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        result = self._asr.transcribe(audio, context)
        with self._lock:
            self.compute_s += result.compute_s
        return result


class _Question:
    """A dialog that asks one digit question and listens: it notes what it is told (the
    clear text a dialog gets; the call's record masks a sensitive answer), and the caller's
    silence after the answer ends the call."""

    def __init__(self, expects: Expectation) -> None:
        self._expects = expects
        self.heard: list[str] = []  # each answered turn's text, as the dialog gets it
        self.dropped: list[str] = []  # "reason: raw text" of each turn without words

    def greet(self) -> Reply:
        return Reply("What is the number?", kind="question", expects=self._expects)

    def respond(self, turn: CallerTurn) -> Reply:
        self.heard.append(turn.text)
        return Reply("", kind="answer", expects=self._expects)

    def not_understood(self, turn: CallerTurn) -> Reply:
        self.dropped.append(f"{turn.transcript.dropped}: {turn.transcript.raw_text}")
        return Reply("", kind="reprompt", expects=self._expects)

    def no_input(self) -> Reply:
        return Reply("", kind="farewell", end_call=True)


class _Pause:
    """The question "spoken" as 0.1 s of silence: the caller hears that a question was
    asked (the session hands its expectation to the recognizer), at no synthesis cost."""

    name = "pause"

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        if text:
            yield SpeechChunk(text, np.zeros(SAMPLE_RATE // 10, np.int16))


@dataclass(frozen=True)
class Heard:
    text: str
    turns: int
    dropped: tuple[str, ...]
    compute_s: float


class DigitCaller:
    """Plays one answer into a real call session (VAD, endpointer, guards, context)."""

    def __init__(self, options: DigitOptions) -> None:
        main = make_asr(options.asr)
        digits = make_asr(options.digits_asr) if options.digits_asr else None
        for asr in (main, digits):
            if asr is not None:
                asr.transcribe(np.zeros(SAMPLE_RATE, np.float32))  # warm-up, as the bot does
        self._asr: ASR = main if digits is None else DigitTurnsASR(main, digits)
        self._options = options
        self._workers = PriorityWorkers(2, "eval-digits")

    def hear(self, audio: np.ndarray, expects: Expectation) -> Heard:
        asr = _Counted(self._asr)
        question = _Question(expects if self._options.biased else Expectation())
        asyncio.run(self._call(asr, audio, question))
        return Heard(
            " ".join(t for t in question.heard if t),
            len(question.heard) + len(question.dropped),
            tuple(question.dropped),
            asr.compute_s,
        )

    async def _call(self, asr: _Counted, audio: np.ndarray, question: _Question) -> None:
        session = CallSession(
            asr=asr,
            tts=_Pause(),
            vad=make_vad(self._options.vad),
            dialog=question,
            scheduler=Scheduler(self._workers, realtime=False),
            record=CallRecord(pack="-", asr_model=asr.name, tts_voice="pause"),
            config=CallConfig(partial_interval_s=0),  # a phone line shows no partials
        )
        segment = CallerSegment(audio, Cue.BOT_DONE, _LEAD_S)
        await session.run(SimulatedCaller([segment], tail_s=_HANG_UP_S))

    def close(self) -> None:
        self._workers.shutdown()


def spoken(
    say: str,
    voice: str,
    condition: LineCondition,
    renderer: CallerRenderer,
    *,
    pause_s: float,
    seed: int,
) -> np.ndarray:
    """``say`` in ``voice``, its ``|``-separated groups with ``pause_s`` of silence between
    them, over the phone line ``condition``. Each group is rendered (and cached) on a clean
    narrowband line; the whole answer then goes through the line, noise and all."""
    clean = line("linear")
    gap = np.zeros(round(pause_s * SAMPLE_RATE), np.float32)
    pieces: list[np.ndarray] = []
    for group in (g.strip() for g in say.split("|")):
        pieces += [renderer.render(group, voice, clean), gap]
    return condition.apply(np.concatenate(pieces[:-1]), seed=seed)


def _check(entry: Entry) -> str | None:
    """Why a manifest line cannot be evaluated, or None."""
    data = entry.data
    if data["kind"] not in KINDS:
        return f"unknown kind {data['kind']!r} (known: {', '.join(KINDS)})"
    if not data["digits"].isdigit():
        return f"digits {data['digits']!r} must be digits only"
    expected = KINDS[data["kind"]][1].digits
    if expected is not None and len(data["digits"]) != expected:
        return f"a {data['kind']} has {expected} digits, not {len(data['digits'])}"
    pause = data.get("pause_s", PAUSE_S)
    if isinstance(pause, bool) or not isinstance(pause, int | float) or not 0 <= pause <= 2:
        return f"pause_s {pause!r} must be seconds between 0 and 2"
    if "say" not in data and "audio" not in data:
        return "needs 'say' (words to speak) or 'audio' (a recording)"
    return None


def evaluate_digits(manifest: Path, report_path: Path, options: DigitOptions) -> dict:
    """Every line spoken by every voice (or its recording), heard in a call, read as the
    dialog reads it; bad lines and unreadable audio are issues."""
    for voice in options.voices:
        if voice not in CALLER_VOICES:
            raise EvalInputError(f"unknown voice {voice!r}; known: {', '.join(CALLER_VOICES)}")
    entries, issues = read_jsonl(manifest, ("kind", "digits"))
    condition = line(options.line)
    renderer = CallerRenderer()
    jobs: list[tuple[Entry, str]] = []
    for entry in entries:
        problem = _check(entry)
        if problem is not None:
            issues.append(Issue(f"{manifest}:{entry.line}", problem))
            continue
        voices = ("recorded",) if "audio" in entry.data else options.voices
        jobs += [(entry, voice) for voice in voices]
    if not jobs:
        raise EvalInputError(f"{manifest}: no line could be evaluated")
    caller = DigitCaller(options)
    items: list[dict] = []
    try:
        for entry, voice in tqdm(jobs, desc=f"digits {options.asr}", unit="answer", leave=False):
            where = f"{manifest}:{entry.line}"
            try:
                audio = _audio(manifest, entry, voice, condition, renderer)
            except (AudioInputError, CallerAudioError) as exc:
                issues.append(Issue(where, f"{voice}: {exc}"))
                continue
            items.append(_item(entry, voice, audio, caller.hear(audio, _expects(entry))))
    finally:
        caller.close()
    report = _summary(items)
    report.update(
        asr=options.asr,
        digits_asr=options.digits_asr,
        biased=options.biased,
        line=options.line,
        voices=list(options.voices),
        manifest=str(manifest),
    )
    return finish(report_path, report, issues, items, _write_markdown)


def _expects(entry: Entry) -> Expectation:
    expects = KINDS[entry.data["kind"]][1]
    if expects.kind is Expect.DIGITS and expects.digits is None:
        return Expectation(Expect.DIGITS, len(entry.data["digits"]), expects.slot)
    return expects


def _audio(
    manifest: Path, entry: Entry, voice: str, condition: LineCondition, renderer: CallerRenderer
) -> np.ndarray:
    if voice == "recorded":
        return load_audio(manifest.parent / entry.data["audio"])
    pause = float(entry.data.get("pause_s", PAUSE_S))
    return spoken(entry.data["say"], voice, condition, renderer, pause_s=pause, seed=entry.line)


def _item(entry: Entry, voice: str, audio: np.ndarray, heard: Heard) -> dict:
    data = entry.data
    slot_type, expects = KINDS[data["kind"]]
    length = len(data["digits"]) if expects.digits is not None else None
    read = (parse_digit_slot(slot_type, heard.text, length) or "").lstrip("+")
    unsized = (parse_digit_slot(slot_type, heard.text) or "").lstrip("+")
    family = "recorded" if voice == "recorded" else CALLER_VOICES[voice].family
    return {
        "name": f"{entry.line}:{voice}",
        "line": entry.line,
        "kind": data["kind"],
        "digits": data["digits"],
        "say": data.get("say", ""),
        "voice": voice,
        "family": family,
        "heard": heard.text,
        "read": read,
        "passed": read == data["digits"],
        "passed_without_length": unsized == data["digits"],
        "digit_errors": _digit_errors(data["digits"], read),
        "turns": heard.turns,
        "dropped": list(heard.dropped),
        "audio_s": round(len(audio) / SAMPLE_RATE, 3),
        "compute_s": round(heard.compute_s, 4),
    }


def _digit_errors(reference: str, read: str) -> int:
    """Digit substitutions, deletions and insertions (an unread answer: every digit)."""
    if not read:
        return len(reference)
    out = process_characters(reference, read)
    return out.substitutions + out.deletions + out.insertions


def _summary(items: list[dict]) -> dict:
    def rate(group: list[dict]) -> float:
        return sum(i["passed"] for i in group) / len(group) if group else 0.0

    by: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        for key in ("voice", "family", "kind"):
            by[key][item[key]].append(item)
    audio_s = sum(i["audio_s"] for i in items)
    digits = sum(len(i["digits"]) for i in items)
    return {
        "n": len(items),
        "exact_match": rate(items),
        "exact_match_without_length": (
            sum(i["passed_without_length"] for i in items) / len(items) if items else 0.0
        ),
        "digit_error_rate": sum(i["digit_errors"] for i in items) / digits if digits else 0.0,
        "rtf": sum(i["compute_s"] for i in items) / audio_s if audio_s else 0.0,
        "split_turns": sum(i["turns"] > 1 for i in items),
        **{
            f"by_{key}": {name: {"n": len(g), "exact_match": rate(g)} for name, g in groups.items()}
            for key, groups in by.items()
        },
    }


def _write_markdown(report_path: Path, report: dict) -> None:
    voices = report.get("by_voice", {})
    chart = grouped_bars(
        plot_path(report_path, "voices"),
        list(voices),
        {"exact match": [v["exact_match"] for v in voices.values()]},
        "exact match per voice",
    )
    tables = []
    for key in ("kind", "family", "voice"):
        rows = [[name, g["n"], g["exact_match"]] for name, g in report.get(f"by_{key}", {}).items()]
        tables += [f"## By {key}", markdown_table([key, "n", "exact match"], rows)]
    misses = [
        [i["line"], i["voice"], i["kind"], i["digits"], i["say"], i["heard"], i["read"] or "-"]
        for i in report["items"]
        if not i["passed"]
    ]
    write_markdown(
        report_path,
        [
            f"# Digit eval: {report['asr']}"
            + (f" (digit turns: {report['digits_asr']})" if report["digits_asr"] else ""),
            f"Manifest `{report['manifest']}`: {report['n']} answers over line "
            f"`{report['line']}`, {'digit-biased' if report['biased'] else 'plain'} decode; "
            f"{report['failures']} lines not evaluated.",
            markdown_table(
                [
                    "exact match",
                    "without the expected length",
                    "digit error rate",
                    "RTF",
                    "split into turns",
                ],
                [
                    [
                        report["exact_match"],
                        report["exact_match_without_length"],
                        report["digit_error_rate"],
                        report["rtf"],
                        report["split_turns"],
                    ]
                ],
            ),
            f"![exact match per voice]({chart.name})",
            *tables,
            "## Misses",
            markdown_table(["line", "voice", "kind", "digits", "said", "heard", "read"], misses),
        ],
        report["issues"],
    )
