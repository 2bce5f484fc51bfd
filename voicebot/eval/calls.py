"""`voicebot eval calls`: whole simulated calls through the real pipeline, scored per scenario.

Each scenario is one call on a ``Bot`` of its pack (audio -> VAD -> ASR -> dialog -> handoff
-> TTS): caller turns are played once the bot has finished speaking (plus a 0.5 s gap), or
``barge_in`` seconds after it starts, for interruptions. Turns without recorded audio are
spoken by a caller voice (``voicebot.tts.caller_voice``: six engine families, never the
bot's own voice) and every turn goes through a phone line (``voicebot.audio.telephone``).
Once the bot has answered the last turn the caller hangs up; after a handoff the remaining
turns are not played.

Who calls over which line: one voice and line for every scenario (``--voices VOICE``,
``--line SPEC``; by default ``piper-low`` over clean mu-law), or ``--voices matrix``: the
scenarios, in name order, take the (family, line) pairs of ``FAMILIES`` x ``MATRIX_LINES`` in
turn, so any ``len(FAMILIES) * len(MATRIX_LINES)`` of them cover every pair, and each family
rotates through its voices. Rendered audio is kept on disk (``CallerRenderer``), so a
second run renders nothing. The report breaks its figures down by voice family, voice and
line condition.

``--text`` plays the same scenarios through the same dialog on their reference text (no
audio, no recognizer): a scenario that fails there fails in the dialog, one that fails only
with audio fails in recognition.

The back office is reset for every scenario, so a card blocked in one call is active again
in the next. Without ``--realtime`` the call clock charges every model's compute time
(``voicebot/pipeline/scheduler.py``), so latencies are those a caller would hear.
"""

import asyncio
import math
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voicebot.audio.frames import FRAME_S
from voicebot.audio.io import load_audio
from voicebot.audio.telephone import line
from voicebot.dialog.pack import OUT_OF_SCOPE
from voicebot.errors import VoicebotError
from voicebot.eval.manifest import Issue
from voicebot.eval.metrics import confusion
from voicebot.eval.normalize import normalize
from voicebot.eval.report import (
    confusion_heatmap,
    finish,
    grouped_bars,
    histogram,
    markdown_table,
    percentile,
    plot_path,
    write_markdown,
)
from voicebot.eval.scenarios import Scenario, ScenarioTurn, load_scenarios
from voicebot.eval.wer import Errors, total, word_errors
from voicebot.events import CallerTurn, Transcript
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.pipeline.record import CallRecord, JsonFileSink, Turn
from voicebot.privacy.lockout import VerificationLockout
from voicebot.services.demo_bank import DemoBank
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.tts.caller_voice import (
    CALLER_VOICES,
    DEFAULT_VOICE,
    FAMILIES,
    CallerRenderer,
    caller_voice,
)
from voicebot.vad import DEFAULT_VAD

_GAP_S = 0.5  # a polite caller's pause after the bot stops talking
_HANG_UP_S = 1.0  # line silence between the bot's last answer and the caller hanging up
MATRIX = "matrix"
DEFAULT_LINE = "mulaw"
# The lines of ``--voices matrix``: clean G.711 both ways, noise of three kinds at 10-20 dB,
# packet loss with concealment, and a muffled, clipped handset.
MATRIX_LINES = (
    "mulaw",
    "alaw",
    "babble-15",
    "alaw+street-10",
    "hum-20",
    "loss-2",
    "alaw+muffled+clipped",
)
TEXT = "text"  # voice, family and line of a --text run: the reference words themselves


@dataclass(frozen=True)
class CallOptions:
    asr: str = "tiny.en"
    vad: str = DEFAULT_VAD
    voices: str = DEFAULT_VOICE  # a caller voice, or "matrix"
    line: str | None = None  # every call's line; None: mu-law, or the matrix's lines
    realtime: bool = False
    records_dir: Path | None = None  # keep each call's record as DIR/<scenario name>.json
    text: bool = False  # reference text through the dialog: no audio, no recognizer

    def check(self) -> None:
        """Unknown voices and lines are errors before any call runs."""
        if self.voices != MATRIX:
            caller_voice(self.voices)
        if self.line is not None:
            line(self.line)


@dataclass(frozen=True)
class Assignment:
    """Who calls in one scenario, and over which line."""

    voice: str
    family: str
    line: str


def assign(names: list[str], options: CallOptions) -> dict[str, Assignment]:
    """Each scenario's caller voice and line; deterministic for a given set of names."""
    if options.text:
        return {name: Assignment(TEXT, TEXT, TEXT) for name in names}
    if options.voices != MATRIX:
        voice = caller_voice(options.voices)
        chosen = options.line or DEFAULT_LINE
        return {name: Assignment(voice.name, voice.family, chosen) for name in names}
    families, lines = list(FAMILIES), [options.line] if options.line else list(MATRIX_LINES)
    out = {}
    for index, name in enumerate(sorted(names)):
        family = families[index % len(families)]
        visit = index // len(families)  # this family's turn: its line is the next one
        voices = FAMILIES[family]
        # Its voices rotate too; where the two cycles share a factor they would lock a voice
        # to some lines, so each full cycle of both shifts the voices by one.
        voice = (visit + visit // math.lcm(len(voices), len(lines))) % len(voices)
        out[name] = Assignment(voices[voice], family, lines[visit % len(lines)])
    return out


class CallerAudio:
    """Caller turns as the bot hears them: recorded or synthesized, through the phone line."""

    def __init__(self, renderer: CallerRenderer) -> None:
        self._renderer = renderer

    def turn(self, turn: ScenarioTurn, who: Assignment) -> np.ndarray:
        """Raises ``AudioInputError`` (naming the file) for missing or unreadable audio, and
        ``CallerAudioError`` when the voice's engine is missing or fails."""
        condition = line(who.line)
        if turn.noise_snr is not None:  # this turn's own noise level (white if the line has none)
            condition = replace(condition, noise=condition.noise or "white", snr_db=turn.noise_snr)
        seed = zlib.crc32(turn.caller.encode())
        if turn.audio is not None:
            return condition.apply(load_audio(turn.audio), seed=seed)
        return self._renderer.render(turn.caller, who.voice, condition, seed)


def evaluate_calls(
    paths: list[Path],
    report_path: Path,
    options: CallOptions,
    renderer: CallerRenderer | None = None,
) -> dict:
    """Run every scenario; broken files, unknown labels and unusable audio become issues.

    ``renderer`` keeps rendered caller audio (default: under the model cache)."""
    options.check()
    scenarios, issues = load_scenarios(paths)
    who = assign([s.name for s in scenarios], options)
    audio = CallerAudio(renderer or CallerRenderer())
    items: list[dict] = []
    started = time.perf_counter()
    progress = tqdm(total=len(scenarios), desc="calls", unit="call", leave=False)
    for pack in sorted({s.pack for s in scenarios}):
        group = [s for s in scenarios if s.pack == pack]
        try:
            bot: Bot | TextBot = (
                TextBot(pack)
                if options.text
                else Bot(BotConfig(pack=pack, asr=options.asr, vad=options.vad))
            )
        except VoicebotError as exc:
            issues += [Issue(str(s.path), f"pack {pack!r} not usable: {exc}") for s in group]
            progress.update(len(group))
            continue
        try:
            for scenario in group:
                progress.set_postfix_str(scenario.name)
                item = _run_scenario(bot, scenario, who[scenario.name], audio, options, issues)
                if item is not None:
                    items.append(item)
                progress.update()
        finally:
            bot.close()
    progress.close()
    report = summarize(items)
    report.update(
        mode=TEXT if options.text else "audio",
        realtime=options.realtime,
        asr=None if options.text else options.asr,
        voices=None if options.text else options.voices,
        line=None if options.text else options.line or _default_line(options),
        by_family=breakdown(items, "family"),
        by_voice=breakdown(items, "voice"),
        by_line=breakdown(items, "line"),
        wall_s=round(time.perf_counter() - started, 1),
    )
    return finish(report_path, report, issues, items, _write_markdown)


def _default_line(options: CallOptions) -> str:
    return MATRIX if options.voices == MATRIX else DEFAULT_LINE


class TextBot:
    """A pack's real dialog on its own, for ``--text``: each caller turn is its reference
    text, read as if recognized with full confidence; the record has the shape of a call's,
    so the same scoring applies."""

    def __init__(self, pack: str) -> None:
        from voicebot.dialog.embeddings import SentenceEmbedder
        from voicebot.dialog.intent_classifier import IntentClassifier
        from voicebot.dialog.llm import LLMClient, LLMConfig
        from voicebot.dialog.pack import load_pack

        self.pack = load_pack(pack)
        self.classifier = IntentClassifier.for_pack(self.pack, SentenceEmbedder())
        llm_config = LLMConfig.from_env()
        self.llm = LLMClient(llm_config) if llm_config else None

    def run_call(self, scenario: Scenario) -> tuple[CallRecord, list[float]]:
        """The call's record, and when each caller turn was "played" (one a second)."""
        from voicebot.dialog.manager import DialogManager

        dialog = DialogManager(
            self.pack, self.classifier, DemoBank(), caller_id=scenario.caller_id, llm=self.llm
        )
        record = CallRecord(
            pack=self.pack.name, asr_model=TEXT, tts_voice=TEXT, caller_id=scenario.caller_id
        )
        record.turns.append(Turn("bot", dialog.greet().text, 0.0, kind="greeting"))
        record.ended_by = "caller"  # unless the bot ends it: the caller hangs up
        starts: list[float] = []
        for index, turn in enumerate(scenario.turns):
            start = float(index + 1)
            starts.append(start)
            heard = Transcript(turn.caller, 0.0, 0.0, 0.0, 0.0, raw_text=turn.caller)
            reply = dialog.respond(CallerTurn(turn.caller, heard, start, start + 0.5))
            caller = Turn("caller", turn.caller, start, start + 0.5)
            if reply.intent is not None:
                caller.intent = reply.intent.intent
                caller.confidence = round(reply.intent.confidence, 4)
                caller.margin = round(reply.intent.margin, 4)
            if reply.decision is not None:
                caller.policy = asdict(reply.decision)
            record.turns += [caller, Turn("bot", reply.text, start + 0.5, kind=reply.kind)]
            if reply.kind == "handoff" and reply.decision is not None:
                record.ended_by, record.handoff_reason = "handoff", reply.reason
                record.handoff = {
                    "reason": reply.reason,
                    "explanation": reply.decision.explanation,
                    "signals": reply.decision.signals,
                }
                break
            if reply.end_call:
                record.ended_by = "bot"
                break
        return record, starts

    def close(self) -> None:
        """Nothing to release (the audio ``Bot``'s counterpart)."""


def _run_scenario(
    bot: "Bot | TextBot",
    scenario: Scenario,
    who: Assignment,
    audio: CallerAudio,
    options: CallOptions,
    issues: list[Issue],
) -> dict | None:
    known = set(bot.pack.intents) | {OUT_OF_SCOPE}
    for turn in scenario.turns:
        if turn.expect_intent is not None and turn.expect_intent not in known:
            why = f"unknown intent {turn.expect_intent!r} for pack {bot.pack.name}"
            issues.append(Issue(f"{scenario.path}:{turn.line}", why))
            return None
    started = time.perf_counter()
    if isinstance(bot, TextBot):
        record, starts = bot.run_call(scenario)
        item = score_call(scenario, record, starts, time.perf_counter() - started, audio=False)
        return item | asdict(who)
    segments = []
    for turn in scenario.turns:
        try:
            pcm = audio.turn(turn, who)
        except VoicebotError as exc:  # missing or unreadable recording, a voice's engine
            issues.append(Issue(f"{scenario.path}:{turn.line}", str(exc)))
            return None
        if turn.barge_in is None:
            segments.append(CallerSegment(pcm, Cue.BOT_DONE, _GAP_S))
        else:
            segments.append(CallerSegment(pcm, Cue.BOT_START, turn.barge_in))
    # An empty last segment: the caller hangs up once the bot has answered the last turn.
    segments.append(CallerSegment(np.zeros(0, np.float32), Cue.BOT_DONE, _HANG_UP_S))
    caller = SimulatedCaller(segments, realtime=options.realtime, tail_s=_HANG_UP_S)
    bot.services = DemoBank(bot.config.bank_db)  # every call starts from the seeded data
    bot.lockout = VerificationLockout(max_failures=bot.lockout.max_failures)  # and no history
    started = time.perf_counter()
    heard: list[str] = []  # what the bot heard, in clear: the record keeps it masked

    def observe(kind: str, event: object) -> None:
        if kind == "final":
            heard.append(getattr(event, "text", ""))

    sinks = (
        []
        if options.records_dir is None
        else [JsonFileSink(options.records_dir / f"{scenario.name}.json")]
    )
    record = asyncio.run(
        bot.run_call(
            caller,
            realtime=options.realtime,
            caller_id=scenario.caller_id,
            sinks=sinks,
            observer=observe,
        )
    )
    wall = time.perf_counter() - started
    item = score_call(scenario, record, caller.segment_starts, wall, heard)
    return item | asdict(who)


def score_call(
    scenario: Scenario,
    record: CallRecord,
    segment_starts: list[float],
    wall_s: float,
    heard: list[str] | None = None,
    *,
    audio: bool = True,
) -> dict:
    """Check the scenario's expectations against the call record (pure: no models).

    ``heard``: the final transcripts in clear, in order, for the WER of turns the record
    masks (a ZIP code); the report itself shows the masked text. Without ``audio`` (a
    ``--text`` call) nobody talks over anybody: barge-ins are not checked."""
    spoken = [t for t in record.turns if t.role == "caller" and t.kind != "dtmf"]
    clear = {id(t): text for t, text in zip(spoken, heard or [], strict=False)}
    caller_turns = sorted((t for t in record.turns if t.role == "caller"), key=lambda t: t.start)
    # Window of each played turn: from its first frame to the next one's (half a frame early,
    # as recorded turn starts are rounded to the millisecond).
    played = [start - FRAME_S / 2 for start in segment_starts[: len(scenario.turns)]]
    bounds = [*played[1:], float("inf")]
    failures: list[str] = []
    turns = []
    for index, turn in enumerate(scenario.turns):
        heard = (
            [t for t in caller_turns if played[index] <= t.start < bounds[index]]
            if index < len(played)
            else None
        )
        turns.append(_score_turn(index, turn, heard, failures, clear))
        if heard is not None:
            turns[-1]["start"] = round(segment_starts[index], 3)
    handoff = record.ended_by == "handoff"
    if scenario.expect_handoff and not handoff:
        failures.append(
            f"expected a handoff ({scenario.expect_reason or 'any reason'}); "
            f"the call ended by {record.ended_by}"
        )
    elif handoff and not scenario.expect_handoff:
        failures.append(f"unexpected handoff ({record.handoff_reason})")
    elif handoff and scenario.expect_reason not in (None, record.handoff_reason):
        failures.append(
            f"handoff reason {record.handoff_reason}, expected {scenario.expect_reason}"
        )
    bot_text = " ".join(t.text for t in record.turns if t.role == "bot").lower()
    failures += [
        f"the bot never said {p!r}" for p in scenario.bot_says if p.lower() not in bot_text
    ]
    barged = any(t.barge_in is not None for t in scenario.turns[: len(played)])
    if audio and barged and not record.barge_ins:
        failures.append("the bot did not stop for the barge-in")
    return {
        "name": scenario.name,
        "file": str(scenario.path),
        "pack": scenario.pack,
        "tags": list(scenario.tags),
        "passed": not failures,
        "failures": failures,
        "ended_by": record.ended_by,
        "handoff": {
            "expected": scenario.expect_handoff,
            "expected_reason": scenario.expect_reason,
            "actual": handoff,
            "reason": record.handoff_reason,
            **(record.handoff or {}),
        },
        "turns": turns,
        "bot": [
            {"text": t.text, "kind": t.kind, "start": t.start, "interrupted": t.interrupted}
            for t in record.turns
            if t.role == "bot"
        ],
        "barge_ins": record.barge_ins,
        "latency_ms": record.summary()["voice_to_voice_ms"],
        "duration_s": record.duration_s,
        "wall_s": round(wall_s, 2),
    }


def _score_turn(
    index: int,
    turn: ScenarioTurn,
    heard: list[Turn] | None,
    failures: list[str],
    clear: dict[int, str],
) -> dict[str, Any]:
    label = f"turn {index + 1} (line {turn.line})"
    out: dict[str, Any] = {"caller": turn.caller, "line": turn.line, "played": heard is not None}
    if turn.expect_intent is not None:
        out["expect_intent"] = turn.expect_intent
    if heard is None:
        if turn.expect_intent is not None:
            failures.append(f"{label} was not played: the call had ended")
        return out
    answered = [t for t in heard if not t.dropped and t.intent is not None]
    last = answered[-1] if answered else None
    out.update(
        recognized=" ".join(t.text for t in heard if not t.dropped),
        word_errors=word_errors(
            normalize(turn.caller),
            normalize(" ".join(clear.get(id(t), t.text) for t in heard if not t.dropped)),
        ).to_dict(),
        dropped=[t.dropped for t in heard if t.dropped],
        intent=last.intent if last else None,
        confidence=last.confidence if last else None,
        policy=last.policy if last else None,
        timings=last.timings if last else {},
    )
    if turn.expect_intent is not None and out["intent"] != turn.expect_intent:
        failures.append(
            f"{label}: expected intent {turn.expect_intent}, got {out['intent']} "
            f"(heard {out['recognized']!r})"
        )
    return out


def summarize(items: list[dict]) -> dict:
    """The contract's call metrics over scored scenarios."""
    checked = [
        t for i in items for t in i["turns"] if t.get("expect_intent") is not None and t["played"]
    ]
    expected = [i["handoff"]["expected"] for i in items]
    actual = [i["handoff"]["actual"] for i in items]
    hits = sum(e and a for e, a in zip(expected, actual, strict=True))
    with_reason = [i for i in items if i["handoff"]["actual"] and i["handoff"]["expected_reason"]]
    latencies = [v for i in items for v in i["latency_ms"]]
    words = [
        Errors(**{k: v for k, v in t["word_errors"].items() if k != "rate"})
        for i in items
        for t in i["turns"]
        if t["played"]
    ]
    tags = sorted({tag for i in items for tag in i["tags"]})
    return {
        "n": len(items),
        "task_success": _share(sum(i["passed"] for i in items), len(items)),
        "intent_accuracy": _share(
            sum(t["intent"] == t["expect_intent"] for t in checked), len(checked)
        ),
        "handoff_precision": _share(hits, sum(actual), empty=float(not any(expected))),
        "handoff_recall": _share(hits, sum(expected), empty=float(not any(actual))),
        "handoff_reason_accuracy": _share(
            sum(i["handoff"]["reason"] == i["handoff"]["expected_reason"] for i in with_reason),
            len(with_reason),
        ),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "n": len(latencies),
        },
        "caller_wer": total(words).rate if words else 0.0,
        "intent_turns": len(checked),
        "confusion": confusion(
            [t["expect_intent"] for t in checked], [str(t["intent"]) for t in checked]
        ),
        "by_tag": {
            tag: {
                "n": sum(tag in i["tags"] for i in items),
                "task_success": _share(
                    sum(i["passed"] for i in items if tag in i["tags"]),
                    sum(tag in i["tags"] for i in items),
                ),
            }
            for tag in tags
        },
        "failed": [i["name"] for i in items if not i["passed"]],
        "ended_by": dict(Counter(i["ended_by"] for i in items)),
    }


def _share(part: int, whole: int, empty: float = 0.0) -> float:
    return part / whole if whole else empty


_BROKEN_DOWN = ("task_success", "intent_accuracy", "caller_wer")


def breakdown(items: list[dict], key: str) -> dict[str, dict[str, Any]]:
    """Task success, intent accuracy and caller WER per value of ``key`` (``family``,
    ``voice`` or ``line``), in the registry's order (matrix lines first, then the rest)."""
    order = [*FAMILIES, *CALLER_VOICES, *MATRIX_LINES]
    groups = sorted(
        {i[key] for i in items}, key=lambda g: (order.index(g) if g in order else len(order), g)
    )
    out = {}
    for group in groups:
        subset = [i for i in items if i[key] == group]
        scores = summarize(subset)
        out[group] = {"n": len(subset)} | {m: scores[m] for m in _BROKEN_DOWN}
    return out


def _write_markdown(report_path: Path, report: dict) -> None:
    latency = report["latency_ms"]
    text = report["mode"] == TEXT
    hist = histogram(
        plot_path(report_path, "latency"),
        [v for i in report["items"] for v in i["latency_ms"]],
        xlabel="voice-to-voice latency (ms)",
        title="end of caller speech -> first bot audio",
    )
    if text:
        setup = "text dry-run: the reference text through the dialog, no audio, no ASR"
    else:
        clock = "real time" if report["realtime"] else "fast clock"
        setup = f"{clock}, ASR {report['asr']}, voices {report['voices']}, line {report['line']}"
    sections = [
        "# Call eval" + (" (text)" if text else ""),
        f"{report['n']} scenarios ({setup}); {report['failures']} not evaluated; "
        f"{report['wall_s']:.0f} s wall time.",
        markdown_table(
            [
                "task success",
                "intent acc.",
                "handoff P",
                "handoff R",
                "reason acc.",
                "v2v p50 ms",
                "v2v p95 ms",
                "caller WER",
            ],
            [
                [
                    report["task_success"],
                    report["intent_accuracy"],
                    report["handoff_precision"],
                    report["handoff_recall"],
                    report["handoff_reason_accuracy"],
                    latency["p50"],
                    latency["p95"],
                    report["caller_wer"],
                ]
            ],
        ),
    ]
    for key, title in (("family", "voice family"), ("line", "line condition"), ("voice", "voice")):
        groups = report[f"by_{key}"]
        sections += [
            f"## By {title}",
            markdown_table(
                [title, "scenarios", "task success", "intent acc.", "caller WER"],
                [
                    [g, s["n"], s["task_success"], s["intent_accuracy"], s["caller_wer"]]
                    for g, s in groups.items()
                ],
            ),
        ]
        if key != "voice" and not text:
            plot = grouped_bars(
                plot_path(report_path, f"by_{key}"),
                list(groups),
                {
                    "task success": [s["task_success"] for s in groups.values()],
                    "intent accuracy": [s["intent_accuracy"] for s in groups.values()],
                    "caller WER": [s["caller_wer"] for s in groups.values()],
                },
                f"by {title}",
            )
            sections.append(f"![by {title}]({plot.name})")
    if not text:
        sections += ["## Task success by family and line", _matrix_table(report)]
    sections += [
        "## By tag",
        markdown_table(
            ["tag", "scenarios", "task success"],
            [[tag, s["n"], s["task_success"]] for tag, s in report["by_tag"].items()],
        ),
    ]
    if not text:
        sections.append(f"![latency]({hist.name})")
    if report["confusion"]:
        heatmap = confusion_heatmap(
            plot_path(report_path, "confusion"), report["confusion"], "caller turn intents"
        )
        sections.append(f"![confusion]({heatmap.name})")
    failed = [i for i in report["items"] if not i["passed"]]
    sections += [
        "## Failed scenarios",
        markdown_table(
            ["scenario", "voice", "line", "tags", "ended by", "why"],
            [
                [
                    i["name"],
                    i["voice"],
                    i["line"],
                    ", ".join(i["tags"]),
                    i["ended_by"],
                    "; ".join(i["failures"]),
                ]
                for i in failed
            ],
        )
        if failed
        else "None.",
    ]
    write_markdown(report_path, sections, report["issues"])


def _matrix_table(report: dict) -> str:
    """Passed / played for every (family, line) cell the run covered."""
    families, lines = list(report["by_family"]), list(report["by_line"])
    cells: dict[tuple[str, str], list[bool]] = {}
    for item in report["items"]:
        cells.setdefault((item["family"], item["line"]), []).append(item["passed"])
    rows = [
        [family] + [f"{sum(c)}/{len(c)}" if (c := cells.get((family, ln))) else "-" for ln in lines]
        for family in families
    ]
    return markdown_table(["family", *lines], rows)
