"""`voicebot eval calls`: whole simulated calls through the real pipeline, scored per scenario.

Each scenario is one call on a ``Bot`` of its pack (audio -> VAD -> ASR -> dialog -> handoff
-> TTS): caller turns are played once the bot has finished speaking (plus a 0.5 s gap), or
``barge_in`` seconds after it starts, for interruptions. Turns without recorded audio are
spoken by a caller voice (the Piper voice shifted in pitch and tempo, never the bot's own)
and every turn goes through a telephone channel (``--codec``, ``--noise-snr``). Once the
bot has answered the last turn the caller hangs up; after a handoff the remaining turns are
not played.

The back office is reset for every scenario, so a card blocked in one call is active again
in the next. Without ``--realtime`` the call clock charges every model's compute time
(``voicebot/pipeline/scheduler.py``), so latencies are those a caller would hear.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voicebot.audio.frames import FRAME_S
from voicebot.audio.io import load_audio
from voicebot.audio.telephone import telephone_channel
from voicebot.dialog.pack import OUT_OF_SCOPE
from voicebot.errors import VoicebotError
from voicebot.eval.manifest import Issue
from voicebot.eval.metrics import confusion
from voicebot.eval.normalize import normalize
from voicebot.eval.report import (
    confusion_heatmap,
    finish,
    histogram,
    markdown_table,
    percentile,
    plot_path,
    write_markdown,
)
from voicebot.eval.scenarios import Scenario, ScenarioTurn, load_scenarios
from voicebot.eval.wer import total, word_errors
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.pipeline.record import CallRecord, JsonFileSink, Turn
from voicebot.services.demo_bank import DemoBank
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

_GAP_S = 0.5  # a polite caller's pause after the bot stops talking
_HANG_UP_S = 1.0  # line silence between the bot's last answer and the caller hanging up


@dataclass(frozen=True)
class CallOptions:
    asr: str = "tiny.en"
    vad: str = "webrtc"
    caller_voice: str = "low"
    codec: str = "mulaw"
    noise_snr: float | None = None
    realtime: bool = False
    records_dir: Path | None = None  # keep each call's record as DIR/<scenario name>.json


class CallerAudio:
    """Caller turns as the bot hears them: recorded or synthesized, through the phone line."""

    def __init__(self, options: CallOptions) -> None:
        self._options = options
        self._tts: PiperTTS | None = None
        self._cache: dict[tuple, np.ndarray] = {}

    def turn(self, turn: ScenarioTurn) -> np.ndarray:
        """Raises ``AudioInputError`` (naming the file) for missing or unreadable audio."""
        snr = turn.noise_snr if turn.noise_snr is not None else self._options.noise_snr
        codec = self._options.codec
        if turn.audio is not None:
            return telephone_channel(load_audio(turn.audio), codec=codec, snr_db=snr)
        key = (turn.caller, snr)
        if key not in self._cache:
            if self._tts is None:
                self._tts = PiperTTS(deterministic=True)  # the same audio on every run
            voice = self._options.caller_voice
            self._cache[key] = render_caller(
                self._tts, turn.caller, voice=voice, codec=codec, snr_db=snr
            )
        return self._cache[key]


def evaluate_calls(paths: list[Path], report_path: Path, options: CallOptions) -> dict:
    """Run every scenario; broken files, unknown labels and unusable audio become issues."""
    scenarios, issues = load_scenarios(paths)
    audio = CallerAudio(options)
    items: list[dict] = []
    started = time.perf_counter()
    progress = tqdm(total=len(scenarios), desc="calls", unit="call", leave=False)
    for pack in sorted({s.pack for s in scenarios}):
        group = [s for s in scenarios if s.pack == pack]
        try:
            bot = Bot(BotConfig(pack=pack, asr=options.asr, vad=options.vad))
        except VoicebotError as exc:
            issues += [Issue(str(s.path), f"pack {pack!r} not usable: {exc}") for s in group]
            progress.update(len(group))
            continue
        try:
            for scenario in group:
                progress.set_postfix_str(scenario.name)
                item = _run_scenario(bot, scenario, audio, options, issues)
                if item is not None:
                    items.append(item)
                progress.update()
        finally:
            bot.close()
    progress.close()
    report = summarize(items)
    report.update(
        realtime=options.realtime,
        asr=options.asr,
        caller_voice=options.caller_voice,
        codec=options.codec,
        noise_snr=options.noise_snr,
        wall_s=round(time.perf_counter() - started, 1),
    )
    return finish(report_path, report, issues, items, _write_markdown)


def _run_scenario(
    bot: Bot, scenario: Scenario, audio: CallerAudio, options: CallOptions, issues: list[Issue]
) -> dict | None:
    known = set(bot.pack.intents) | {OUT_OF_SCOPE}
    for turn in scenario.turns:
        if turn.expect_intent is not None and turn.expect_intent not in known:
            why = f"unknown intent {turn.expect_intent!r} for pack {bot.pack.name}"
            issues.append(Issue(f"{scenario.path}:{turn.line}", why))
            return None
    segments = []
    for turn in scenario.turns:
        try:
            pcm = audio.turn(turn)
        except VoicebotError as exc:  # missing or unreadable recording
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
    started = time.perf_counter()
    sinks = (
        []
        if options.records_dir is None
        else [JsonFileSink(options.records_dir / f"{scenario.name}.json")]
    )
    record = asyncio.run(
        bot.run_call(caller, realtime=options.realtime, caller_id=scenario.caller_id, sinks=sinks)
    )
    return score_call(scenario, record, caller.segment_starts, time.perf_counter() - started)


def score_call(
    scenario: Scenario, record: CallRecord, segment_starts: list[float], wall_s: float
) -> dict:
    """Check the scenario's expectations against the call record (pure: no models)."""
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
        turns.append(_score_turn(index, turn, heard, failures))
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
    if any(t.barge_in is not None for t in scenario.turns[: len(played)]) and not record.barge_ins:
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
    index: int, turn: ScenarioTurn, heard: list[Turn] | None, failures: list[str]
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
        word_errors(normalize(t["caller"]), normalize(t["recognized"]))
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


def _write_markdown(report_path: Path, report: dict) -> None:
    latency = report["latency_ms"]
    hist = histogram(
        plot_path(report_path, "latency"),
        [v for i in report["items"] for v in i["latency_ms"]],
        xlabel="voice-to-voice latency (ms)",
        title="end of caller speech -> first bot audio",
    )
    sections = [
        "# Call eval",
        f"{report['n']} scenarios ({'real time' if report['realtime'] else 'fast clock'}), "
        f"ASR {report['asr']}, caller voice {report['caller_voice']}, codec {report['codec']}, "
        f"noise SNR {report['noise_snr']}; {report['failures']} not evaluated; "
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
        "## By tag",
        markdown_table(
            ["tag", "scenarios", "task success"],
            [[tag, s["n"], s["task_success"]] for tag, s in report["by_tag"].items()],
        ),
        f"![latency]({hist.name})",
    ]
    if report["confusion"]:
        heatmap = confusion_heatmap(
            plot_path(report_path, "confusion"), report["confusion"], "caller turn intents"
        )
        sections.append(f"![confusion]({heatmap.name})")
    failed = [i for i in report["items"] if not i["passed"]]
    sections += [
        "## Failed scenarios",
        markdown_table(
            ["scenario", "tags", "ended by", "why"],
            [
                [i["name"], ", ".join(i["tags"]), i["ended_by"], "; ".join(i["failures"])]
                for i in failed
            ],
        )
        if failed
        else "None.",
    ]
    write_markdown(report_path, sections, report["issues"])
