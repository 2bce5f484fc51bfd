"""`voicebot eval turns`: does the caller's turn end where it should, and how soon?

Every item plays through the real VAD (webrtcvad vouched for by Silero unless told) and
the real ``Endpointer``; at each pause the speculative transcript is the real recognizer's
(tiny.en by default) over the audio the session would give it, ready after the compute
time it took (charged to the call clock, as in a call). The decision is
``voicebot.pipeline.endpoint``'s, the code the session runs. Each pause is transcribed once
and reused by every policy, so the whole latency/cut-off curve costs one pass of
recognition.

- Endpointing items (``pause``, ``digits``, ``complete``): a *false cut-off* is a turn that
  ended before the caller's last voiced frame (inside the sentence, inside the digits);
  *endpoint latency* runs from the last voiced frame to the end of the turn, and *final
  latency* to when the final transcript is in hand as well (what the dialog waits for).
  Each policy of the curve is one silence timeout: fixed (the baseline) or dialog-aware.
- Barge-in items (``backchannel``, ``interruption``), said over the bot: a *false barge-in*
  is a backchannel that cuts the bot off; the reaction time is when the bot falls silent
  (speech start + ``start_ms``, unchanged) and the confirmation is when its turn is dropped.
  "Before" is the previous rule: any speech of 200 ms or more over the bot interrupts it.

Manifest (JSONL, paths relative to it): ``{"audio": ..., "kind": "pause" | "digits" |
"complete" | "backchannel" | "interruption", "expects": "request" | "digits" | "phone" |
"yes_no" | ..., "digits": 5, "pauses": [[at_s, seconds], ...], "text": ...}``
(``scripts/build_turn_eval.py`` builds ``eval/turns/turns.jsonl``).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from voicebot.asr import make_asr
from voicebot.asr.base import ASR
from voicebot.audio.frames import FRAME_S, SAMPLE_RATE, iter_frames
from voicebot.audio.io import load_audio
from voicebot.audio.pcm import float_to_pcm16, pcm16_dbfs
from voicebot.errors import AudioInputError, EvalInputError
from voicebot.eval.manifest import Issue, read_jsonl
from voicebot.eval.report import (
    finish,
    markdown_table,
    percentile,
    plot_path,
    save_figure,
    write_markdown,
)
from voicebot.events import (
    Expect,
    Expectation,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
)
from voicebot.pipeline.endpoint import EndpointDecision, TurnEnd, interrupts, is_backchannel
from voicebot.pipeline.session import _TAIL_S, CallConfig
from voicebot.vad import DEFAULT_VAD, make_vad
from voicebot.vad.base import TurnModel
from voicebot.vad.endpointer import Endpointer, EndpointerConfig
from voicebot.vad.smart_turn import SmartTurn

ENDPOINT_KINDS = ("pause", "digits", "complete")
BARGE_IN_KINDS = ("backchannel", "interruption")
CURVE_TIMEOUTS_MS = (200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500)
_LEAD_S, _TAIL_PAD_S = 0.5, 3.0  # silence around each item: the turn has room to end
_PREROLL_S = CallConfig().preroll_s
# No speculative transcript is in sooner than this after it starts: tiny.en's fixed cost on
# Whisper's 30 s window is ~0.35 s even on a quiet 2-core machine (docs/benchmarks.md).
_MIN_ASR_S = 0.2

Hear = Callable[[float, float], tuple[Transcript, float]]  # (audio from, to) -> (text, s)
Judge = Callable[[float, float], tuple[float, float]]  # (from, to) -> (P(complete), s)
T = TypeVar("T")


@dataclass
class _Item:
    name: str
    kind: str
    expects: Expectation
    probs: list[float]  # the VAD's speech probability per 20 ms frame
    levels: list[float]  # each frame's level (dBFS), for the endpointer's background
    vouched: list[bool]  # whether the VAD vouched for speech after each frame (VAD.vouches)
    last_voiced_end: float  # the caller's last voiced frame (call time)
    hear: Hear
    turn: Judge | None = None  # the audio turn model, when the eval has one
    asr_s: float | None = None  # charge this per recognition instead of its measured time

    def cost(self, measured_s: float) -> float:
        return measured_s if self.asr_s is None else self.asr_s


@dataclass(frozen=True)
class Outcome:
    """How one policy ended one endpointing item's first turn."""

    cut_off: bool
    endpoint_ms: float | None  # last voiced frame -> end of turn (None: cut off / never)
    final_ms: float | None  # last voiced frame -> final transcript in hand
    decision: EndpointDecision | None
    heard: str | None = None  # the final transcript (of the first turn)


def _expectation(data: dict[str, Any]) -> Expectation:
    kind = data.get("expects", "request")
    if kind not in set(Expect):
        raise EvalInputError(f"unknown expects {kind!r}; one of {', '.join(Expect)}")
    return Expectation(Expect(kind), digits=data.get("digits"))


def _with_pauses(audio: np.ndarray, pauses: list[list[float]]) -> np.ndarray:
    """The recording with silence inserted at each [where, seconds], plus lead and tail."""
    pieces, cursor = [np.zeros(round(_LEAD_S * SAMPLE_RATE), np.float32)], 0
    for at, seconds in sorted(pauses):
        cut = round(at * SAMPLE_RATE)
        pieces += [audio[cursor:cut], np.zeros(round(seconds * SAMPLE_RATE), np.float32)]
        cursor = cut
    pieces += [audio[cursor:], np.zeros(round(_TAIL_PAD_S * SAMPLE_RATE), np.float32)]
    return np.concatenate(pieces)


def _once_per_stretch(
    audio: np.ndarray, run: Callable[[np.ndarray], tuple[T, float]]
) -> Callable[[float, float], tuple[T, float]]:
    """``run`` (-> its result and compute seconds) on a stretch of ``audio`` (call times
    from, to), computed once per stretch: later policies reuse the result."""
    cache: dict[tuple[int, int], tuple[T, float]] = {}

    def once(start: float, until: float) -> tuple[T, float]:
        key = (round(start * SAMPLE_RATE), round(until * SAMPLE_RATE))
        if key not in cache:
            cache[key] = run(audio[max(0, key[0]) : key[1]])
        return cache[key]

    return once


def _recognizer(asr: ASR, audio: np.ndarray) -> Hear:
    """The recognizer on a stretch of ``audio``, with its measured compute."""

    def hear(stretch: np.ndarray) -> tuple[Transcript, float]:
        transcript = asr.transcribe(stretch)
        return transcript, transcript.compute_s

    return _once_per_stretch(audio, hear)


def _turn_model(model: TurnModel, audio: np.ndarray) -> Judge:
    """The turn model's verdict on a stretch of ``audio``, with its measured compute."""

    def judge(stretch: np.ndarray) -> tuple[float, float]:
        began = time.perf_counter()
        return model.p_complete(stretch), time.perf_counter() - began

    return _once_per_stretch(audio, judge)


def endpoint_item(item: _Item, config: EndpointerConfig) -> Outcome:
    """Play the item into an endpointer with ``config`` until its first turn ends.

    A pause's speculative transcript is computed only once the pause has lasted
    ``_MIN_ASR_S`` past ``eager_ms``: a shorter one ends before any transcript could be in,
    so the session's result would be thrown away (and the eval spares the CPU)."""
    endpointer = Endpointer(config)
    turn_end = TurnEnd(endpointer)
    start = 0.0
    pause: tuple[float, float] | None = None  # (when the speculation starts, speech end)
    ready: tuple[float, Transcript] | None = None  # its result, and when it is in
    sounds: tuple[float, float] | None = None  # the turn model's (when in, P(complete))
    told = [False, False]  # this pause's transcript, and the model's verdict, delivered
    for index, prob in enumerate(item.probs):
        t = index * FRAME_S
        if pause is not None and not (endpointer.paused and endpointer.last_voiced_end == pause[1]):
            pause = ready = sounds = None  # the caller spoke on: that speculation is moot
        if (
            config.dialog_aware
            and pause is not None
            and ready is None
            and t >= pause[0] + _MIN_ASR_S
        ):
            transcript, compute_s = item.hear(start - _PREROLL_S, pause[1] + _TAIL_S)
            ready = (pause[0] + item.cost(compute_s), transcript)
        if pause is not None and sounds is None and turn_end.wants_audio and item.turn:
            p_complete, compute_s = item.turn(start - _PREROLL_S, pause[1] + _TAIL_S)
            sounds = (pause[0] + compute_s, p_complete)  # a second worker, beside the ASR
        if pause is not None and ready is not None and ready[0] <= t and not told[0]:
            turn_end.heard(ready[1])
            told[0] = True
        if pause is not None and sounds is not None and sounds[0] <= t and not told[1]:
            turn_end.heard_audio(sounds[1])
            told[1] = True
        event = endpointer.push(t, prob, item.levels[index], item.vouched[index])
        now = t + FRAME_S
        if isinstance(event, SpeechStarted):
            start = event.t
        elif isinstance(event, SpeechPaused):
            turn_end.paused(item.expects)
            pause, ready, sounds, told = (now, event.end), None, None, [False, False]
        elif isinstance(event, SpeechEnded):
            decision = turn_end.decision(event, now)
            if endpointer.is_noise(event):
                continue
            if event.end < item.last_voiced_end - 1e-6:
                return Outcome(True, None, None, decision)
            final, compute_s = item.hear(start - _PREROLL_S, event.end + _TAIL_S)
            if ready is None:  # the final is the pause's speculation, started at eager_ms
                ready_at = event.end + config.eager_ms / 1000 + item.cost(compute_s)
            else:
                ready_at = ready[0]
            endpoint_ms = (now - event.end) * 1000
            final_ms = (max(now, ready_at) - event.end) * 1000
            return Outcome(False, endpoint_ms, final_ms, decision, final.text)
    return Outcome(False, None, None, None)


@dataclass(frozen=True)
class BargeIn:
    heard: str | None  # the transcript that decided it (None: sustained speech did)
    interrupted: bool
    silenced_ms: float | None  # caller speech start -> bot paused
    confirmed_ms: float | None  # caller speech start -> bot's turn dropped


def barge_in_item(item: _Item, call: CallConfig, *, words_matter: bool) -> BargeIn:
    """Play the item over a talking bot. ``words_matter``: the current rule (backchannels do
    not interrupt); else the previous one (any speech of ``min_voiced_ms`` or more does)."""
    endpointer = Endpointer(call.endpointer)
    start: float | None = None
    silenced = 0.0  # when the bot fell silent: the turn's first ``start_ms`` of speech
    heard: str | None = None
    pending: tuple[float, Transcript] | None = None
    sustained = call.barge_in_sustained_ms if words_matter else call.barge_in_confirm_ms
    for index, prob in enumerate(item.probs):
        t = index * FRAME_S
        if pending is not None and pending[0] <= t:
            heard = None if pending[1].dropped else pending[1].text
        event = endpointer.push(t, prob, item.levels[index], item.vouched[index])
        now = t + FRAME_S
        if isinstance(event, SpeechStarted):
            start, silenced = event.t, now
        elif isinstance(event, SpeechPaused) and start is not None:
            transcript, compute_s = item.hear(start - _PREROLL_S, event.end + _TAIL_S)
            pending = (now + item.cost(compute_s), transcript)
        elif isinstance(event, SpeechEnded) and start is not None:
            if endpointer.is_noise(event):
                start, pending = None, None
                continue
            if not words_matter:
                return BargeIn(heard, True, (silenced - start) * 1000, (now - start) * 1000)
            transcript, compute_s = item.hear(start - _PREROLL_S, event.end + _TAIL_S)
            ready = now + item.cost(compute_s) if pending is None else max(now, pending[0])
            if transcript.dropped or is_backchannel(transcript.text):
                return BargeIn(transcript.text, False, (silenced - start) * 1000, None)
            return BargeIn(transcript.text, True, (silenced - start) * 1000, (ready - start) * 1000)
        voiced_ms = endpointer.voiced_s * 1000
        if (
            start is not None
            and voiced_ms >= call.barge_in_confirm_ms
            and interrupts(voiced_ms, heard, sustained)
        ):
            return BargeIn(heard, True, (silenced - start) * 1000, (now - start) * 1000)
    return BargeIn(None, False, None, None)


def _load(
    manifest: Path, asr: ASR, vad_name: str, turn_model: TurnModel | None
) -> tuple[list[_Item], list[Issue]]:
    entries, issues = read_jsonl(manifest, ("audio", "kind"))
    items = []
    for entry in tqdm(entries, desc="turns: audio and VAD", unit="item", leave=False):
        where = f"{manifest}:{entry.line}"
        data = entry.data
        try:
            if data["kind"] not in ENDPOINT_KINDS + BARGE_IN_KINDS:
                raise EvalInputError(f"unknown kind {data['kind']!r}")
            expects = _expectation(data)
            audio = _with_pauses(
                load_audio(manifest.parent / data["audio"]), data.get("pauses", [])
            )
        except (AudioInputError, EvalInputError) as exc:
            issues.append(Issue(where, str(exc)))
            continue
        vad = make_vad(vad_name)
        frames = list(iter_frames(float_to_pcm16(audio)))
        probs, vouched = [], []
        for frame in frames:
            probs.append(vad.speech_prob(frame))
            vouched.append(vad.vouches)
        threshold = EndpointerConfig().threshold
        voiced = [i for i, p in enumerate(probs) if p >= threshold and vouched[i]]
        if not voiced:
            issues.append(Issue(where, "no voiced frame: the VAD hears no speech"))
            continue
        name = f"{Path(data['audio']).stem}:{entry.line}"
        items.append(
            _Item(
                name,
                data["kind"],
                expects,
                probs,
                [pcm16_dbfs(frame) for frame in frames],
                vouched,
                (voiced[-1] + 1) * FRAME_S,
                _recognizer(asr, audio),
                _turn_model(turn_model, audio) if turn_model is not None else None,
            )
        )
    return items, issues


def _policy_scores(items: list[_Item], config: EndpointerConfig) -> tuple[dict, list[Outcome]]:
    outcomes = [endpoint_item(i, config) for i in items]
    cut = [o.cut_off for i, o in zip(items, outcomes, strict=True) if i.kind == "pause"]
    digits_cut = sum(o.cut_off for i, o in zip(items, outcomes, strict=True) if i.kind == "digits")
    latency = [o.endpoint_ms for o in outcomes if o.endpoint_ms is not None]
    final = [o.final_ms for o in outcomes if o.final_ms is not None]
    scores = {
        "silence_timeout_ms": config.silence_timeout_ms,
        "dialog_aware": config.dialog_aware,
        "false_cutoff_rate": _rate(cut),
        "digit_cutoffs": int(digits_cut),
        "all_cutoff_rate": _rate([o.cut_off for o in outcomes]),
        "endpoint_latency_ms": _stats(latency),
        "final_latency_ms": _stats(final),
    }
    return scores, outcomes


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def evaluate_turns(
    manifest: Path,
    report_path: Path,
    *,
    model: str = "tiny.en",
    vad: str = DEFAULT_VAD,
    asr_ms: float | None = None,
    turn_model: str | None = None,
) -> dict:
    """Endpointing (fixed baseline and dialog-aware, and their curves) and barge-in, with
    each recognition charged its measured compute time; with ``asr_ms``, the same again
    charging that instead (``nominal``: a machine's load out of the comparison). With
    ``turn_model`` (``EndpointerConfig.turn_model``), dialog-aware endpointing with that
    audio model too, as ``with_turn_model`` beside the headline policy."""
    asr = make_asr(model)
    judge = SmartTurn(turn_model) if turn_model is not None else None
    items, issues = _load(manifest, asr, vad, judge)
    report: dict[str, Any] = {"n": len(items), "model": model, "vad": vad}
    report["turn_model"] = turn_model
    report["manifest"] = str(manifest)
    default = EndpointerConfig()
    report["policy"] = {
        "silence_timeout_ms": default.silence_timeout_ms,
        "complete_ms": default.complete_ms,
        "incomplete_ms": default.incomplete_ms,
    }
    endpointing = [i for i in items if i.kind in ENDPOINT_KINDS]
    # The recognition pass (each pause once; every policy after it reuses the transcripts).
    for item in tqdm(endpointing, desc=f"turns: {model} at each pause", unit="item", leave=False):
        endpoint_item(item, replace(default, turn_model=turn_model))
    suite, out_items = _suite(items, turn_model)
    report.update(suite)
    if asr_ms is not None:
        nominal, charged = _suite([replace(i, asr_s=asr_ms / 1000) for i in items], turn_model)
        report["nominal"] = {"asr_ms": asr_ms, **nominal}
        for out, again in zip(out_items, charged, strict=True):  # same items, same order
            if out["kind"] in ENDPOINT_KINDS:
                out["nominal"] = {k: again[k] for k in _DECISION_KEYS if k in again}
    return finish(report_path, report, issues, out_items, _write_markdown)


# What an item's endpointing decided: per item again under ``asr_ms`` (the load left out).
_DECISION_KEYS = (
    "cut_off",
    "endpoint_ms",
    "seen",
    "earlier",
    "model_cut_off",
    "model_endpoint_ms",
    "model_seen",
    "model_earlier",
)
_HEADLINE = ("false_cutoff_rate", "digit_cutoffs", "endpoint_latency_ms", "final_latency_ms")


def _suite(
    items: list[_Item], turn_model: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every policy over the endpointing items, both barge-in rules over the others."""
    endpointing = [i for i in items if i.kind in ENDPOINT_KINDS]
    barge = [i for i in items if i.kind in BARGE_IN_KINDS]
    default = EndpointerConfig()
    fixed = replace(default, dialog_aware=False)
    dialog_scores, dialog_outcomes = _policy_scores(endpointing, default)
    baseline, base_outcomes = _policy_scores(endpointing, fixed)
    report: dict[str, Any] = {k: dialog_scores[k] for k in _HEADLINE}
    report["baseline"] = baseline
    model_outcomes: list[Outcome | None] = [None] * len(endpointing)
    if turn_model is not None:
        with_model = replace(default, turn_model=turn_model)
        report["with_turn_model"], outcomes = _policy_scores(endpointing, with_model)
        report["with_turn_model"]["by_kind"] = {
            kind: _kind_scores(endpointing, outcomes, kind) for kind in ENDPOINT_KINDS
        }
        model_outcomes = list(outcomes)
    report["curve"] = {
        "fixed": [
            _policy_scores(endpointing, replace(fixed, silence_timeout_ms=ms))[0]
            for ms in CURVE_TIMEOUTS_MS
        ],
        "dialog_aware": [
            _policy_scores(
                endpointing,
                replace(default, silence_timeout_ms=ms, complete_ms=min(ms, default.complete_ms)),
            )[0]
            for ms in CURVE_TIMEOUTS_MS
        ],
    }
    report["by_kind"] = {
        kind: {
            "n": sum(i.kind == kind for i in endpointing),
            "dialog_aware": _kind_scores(endpointing, dialog_outcomes, kind),
            "fixed": _kind_scores(endpointing, base_outcomes, kind),
        }
        for kind in ENDPOINT_KINDS
    }
    call = CallConfig()
    rules = {
        rule: [
            barge_in_item(i, call, words_matter=rule == "now")
            for i in tqdm(barge, desc=f"turns: barge-in, {rule}", unit="item", leave=False)
        ]
        for rule in ("now", "before")
    }
    report["barge_in"] = {"sustained_ms": call.barge_in_sustained_ms}
    for rule, results in rules.items():
        report["barge_in"][rule] = _barge_in_scores(barge, results)
    out_items = []
    for item, now, before, heard in zip(
        endpointing, dialog_outcomes, base_outcomes, model_outcomes, strict=True
    ):
        d = now.decision
        with_model = (
            {}
            if heard is None
            else {
                "model_cut_off": heard.cut_off,
                "model_endpoint_ms": heard.endpoint_ms,
                "model_seen": heard.decision.seen if heard.decision else None,
                "model_earlier": [a.seen for a in heard.decision.earlier] if heard.decision else [],
            }
        )
        out_items.append(
            {
                "name": item.name,
                "kind": item.kind,
                "expects": str(item.expects.kind),
                "heard": now.heard,
                "cut_off": now.cut_off,
                "endpoint_ms": now.endpoint_ms,
                "final_ms": now.final_ms,
                "verdict": d.verdict if d else None,
                "seen": d.seen if d else None,
                "earlier": [a.seen for a in d.earlier] if d else [],
                "fixed_cut_off": before.cut_off,
                "fixed_endpoint_ms": before.endpoint_ms,
                **with_model,
            }
        )
    for item, now, before in zip(barge, rules["now"], rules["before"], strict=True):
        out_items.append(
            {
                "name": item.name,
                "kind": item.kind,
                "heard": now.heard,
                "interrupted": now.interrupted,
                "confirmed_ms": now.confirmed_ms,
                "before_interrupted": before.interrupted,
                "before_confirmed_ms": before.confirmed_ms,
            }
        )
    return report, out_items


def _kind_scores(items: list[_Item], outcomes: list[Outcome], kind: str) -> dict:
    chosen = [o for i, o in zip(items, outcomes, strict=True) if i.kind == kind]
    return {
        "cutoff_rate": _rate([o.cut_off for o in chosen]),
        "endpoint_latency_ms": _stats([o.endpoint_ms for o in chosen if o.endpoint_ms is not None]),
        "final_latency_ms": _stats([o.final_ms for o in chosen if o.final_ms is not None]),
    }


def _barge_in_scores(items: list[_Item], results: list[BargeIn]) -> dict[str, Any]:
    backchannels = [r for i, r in zip(items, results, strict=True) if i.kind == "backchannel"]
    real = [r for i, r in zip(items, results, strict=True) if i.kind == "interruption"]
    return {
        "backchannels": len(backchannels),
        "false_barge_in_rate": _rate([r.interrupted for r in backchannels]),
        "interruptions": len(real),
        "missed_rate": _rate([not r.interrupted for r in real]),
        "silenced_ms": _stats([r.silenced_ms for r in real if r.silenced_ms is not None]),
        "confirmed_ms": _stats([r.confirmed_ms for r in real if r.confirmed_ms is not None]),
    }


def _rate(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else 0.0


def _curve_plot(report_path: Path, report: dict) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    runs = [("measured ASR time", report)]
    if "nominal" in report:
        runs.append((f"ASR {report['nominal']['asr_ms']:.0f} ms", report["nominal"]))
    for (label, run), color in zip(runs, ("tab:blue", "tab:green"), strict=False):
        for name, style in (("fixed", "o--"), ("dialog_aware", "s-")):
            points = run["curve"][name]
            x = [p["all_cutoff_rate"] * 100 for p in points]
            y = [p["final_latency_ms"]["p50"] for p in points]
            ax.plot(x, y, style, color=color, label=f"{name.replace('_', '-')}, {label}")
            for p, xi, yi in zip(points, x, y, strict=True):
                ax.annotate(
                    str(p["silence_timeout_ms"]),
                    (xi, yi),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.set_xlabel("false cut-offs, % of all endpointing items")
    ax.set_ylabel("end of speech -> turn ended and final in hand, p50 ms")
    ax.set_title("Latency against cut-offs (point labels: silence timeout, ms)")
    ax.legend(fontsize=7)
    return save_figure(fig, plot_path(report_path, "curve"))


def _write_markdown(report_path: Path, report: dict) -> None:
    chart = _curve_plot(report_path, report)
    head = [
        "policy",
        "pause-set cut-offs",
        "digit cut-offs",
        "endpoint p50",
        "p95",
        "final p50",
        "p95",
    ]

    def row(name: str, s: dict) -> list:
        return [
            name,
            s["false_cutoff_rate"],
            s["digit_cutoffs"],
            round(s["endpoint_latency_ms"]["p50"]),
            round(s["endpoint_latency_ms"]["p95"]),
            round(s["final_latency_ms"]["p50"]),
            round(s["final_latency_ms"]["p95"]),
        ]

    policy = report["policy"]
    aware = f"dialog-aware {policy['complete_ms']}/{policy['silence_timeout_ms']}/"
    aware += f"{policy['incomplete_ms']} ms"
    runs = [("measured ASR time", report)]
    if "nominal" in report:
        runs.append((f"ASR charged {report['nominal']['asr_ms']:.0f} ms", report["nominal"]))
    rows = []
    for label, run in runs:
        fixed = f"fixed {run['baseline']['silence_timeout_ms']} ms (baseline), {label}"
        rows += [row(fixed, run["baseline"]), row(f"{aware}, {label}", run)]
        if "with_turn_model" in run:
            rows.append(row(f"{aware} + {report['turn_model']}, {label}", run["with_turn_model"]))
    kinds = [
        [
            kind,
            s["n"],
            s["fixed"]["cutoff_rate"],
            s["dialog_aware"]["cutoff_rate"],
            round(s["fixed"]["endpoint_latency_ms"]["p50"]),
            round(s["dialog_aware"]["endpoint_latency_ms"]["p50"]),
        ]
        for kind, s in report["by_kind"].items()
    ]
    b = report["barge_in"]
    barge = [
        [
            label,
            s["backchannels"],
            s["false_barge_in_rate"],
            s["interruptions"],
            s["missed_rate"],
            round(s["silenced_ms"]["p50"]),
            round(s["confirmed_ms"]["p50"]),
            round(s["confirmed_ms"]["p95"]),
        ]
        for label, s in (
            ("before (any speech)", b["before"]),
            (f"now (words, or {b['sustained_ms']} ms)", b["now"]),
        )
    ]
    write_markdown(
        report_path,
        [
            f"# Turn-taking eval: {report['model']}, {report['vad']}",
            f"Manifest `{report['manifest']}`: {report['n']} items, {report['failures']} not "
            "evaluated. Latencies from the caller's last voiced frame (the VAD's), call clock "
            "with the recognizer's compute time charged.",
            markdown_table(head, rows),
            "## By kind (cut-off rate; endpoint latency p50 ms)",
            markdown_table(
                ["kind", "n", "fixed cut-offs", "dialog cut-offs", "fixed p50", "dialog p50"], kinds
            ),
            f"![latency against cut-offs]({chart.name})",
            "## Barge-in over the bot",
            markdown_table(
                [
                    "rule",
                    "backchannels",
                    "false barge-ins",
                    "interruptions",
                    "missed",
                    "silenced p50",
                    "confirmed p50",
                    "p95",
                ],
                barge,
            ),
        ],
        report["issues"],
    )
