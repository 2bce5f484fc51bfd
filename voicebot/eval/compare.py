"""`voicebot eval compare BASE.json NEW.json`: what improved, what regressed, and a CI gate.

Each suite's headline metrics have a direction (WER down is better, accuracy up) and a kind:
rates (fractions in [0, 1]) regress when they move the wrong way by more than an absolute
tolerance (default 0.01, i.e. one point); timings (real-time factor, latency, ms per
utterance) by more than a relative one (default 10%, the run-to-run noise of a shared CPU).
``failures`` (inputs not evaluated) may not grow at all. Items that flipped (an utterance
now wrong, a scenario now failing) are listed too, for reading; only the metrics gate.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from voicebot.errors import EvalInputError

RATE_TOLERANCE = 0.01
TIME_TOLERANCE = 0.10


@dataclass(frozen=True)
class Metric:
    path: str  # dotted key in the report
    higher_is_better: bool
    timing: bool = False  # relative tolerance instead of absolute


SUITES: dict[str, tuple[Metric, ...]] = {
    "asr": (
        Metric("wer", False),
        Metric("cer", False),
        Metric("modes.offline.wer", False),
        Metric("modes.streaming.wer", False),
        Metric("rtf", False, timing=True),
    ),
    "intents": (
        Metric("accuracy", True),
        Metric("macro_f1", True),
        Metric("oos_recall", True),
        Metric("oos_precision", True),
        Metric("ms_per_utterance", False, timing=True),
    ),
    "calls": (
        Metric("task_success", True),
        Metric("intent_accuracy", True),
        Metric("handoff_precision", True),
        Metric("handoff_recall", True),
        Metric("handoff_reason_accuracy", True),
        Metric("caller_wer", False),
        Metric("latency_ms.p50", False, timing=True),
        Metric("latency_ms.p95", False, timing=True),
    ),
    "qa": (
        Metric("agreement", True),
        Metric("kappa", True),
    ),
    "digits": (
        Metric("exact_match", True),
        Metric("exact_match_without_length", True),
        Metric("digit_error_rate", False),
        Metric("rtf", False, timing=True),
    ),
}
_FAILURES = Metric("failures", False)


@dataclass(frozen=True)
class Change:
    metric: str
    base: float
    new: float
    tolerance: float
    verdict: str  # improved | regressed | unchanged | within tolerance

    def __str__(self) -> str:
        sign = "+" if self.new >= self.base else ""
        return (
            f"{self.verdict:>16}  {self.metric:<22} {self.base:10.4f} -> {self.new:10.4f} "
            f"({sign}{self.new - self.base:.4f}; tolerance {self.tolerance:g})"
        )


def suite_of(report: dict, where: str) -> str:
    """Which suite wrote ``report``, from the contract's keys."""
    known = (
        ("calls", "task_success"),
        ("intents", "macro_f1"),
        ("asr", "wer"),
        ("qa", "agreement"),
        ("digits", "exact_match"),
    )
    for suite, key in known:
        if key in report:
            return suite
    raise EvalInputError(
        f"{where}: not an eval report (no wer, macro_f1, task_success, agreement or exact_match)"
    )


def parse_tolerances(values: list[str]) -> tuple[float | None, dict[str, float]]:
    """``["0.02", "latency_ms.p95=0.2"]`` -> (rate tolerance for all, per-metric overrides)."""
    default: float | None = None
    overrides: dict[str, float] = {}
    for value in values:
        name, _, number = value.rpartition("=")
        try:
            tolerance = float(number)
        except ValueError:
            raise EvalInputError(
                f"--tolerance {value!r}: expected a number or METRIC=NUMBER"
            ) from None
        if tolerance < 0:
            raise EvalInputError(f"--tolerance {value!r}: must be >= 0")
        if name:
            overrides[name] = tolerance
        else:
            default = tolerance
    return default, overrides


def compare(
    base: dict,
    new: dict,
    *,
    rate_tolerance: float | None = None,
    overrides: dict[str, float] | None = None,
) -> tuple[str, list[Change]]:
    """The suite and one ``Change`` per metric both reports have."""
    suite = suite_of(base, "BASE")
    if suite_of(new, "NEW") != suite:
        raise EvalInputError(f"BASE is a {suite} report but NEW is not: compare like with like")
    overrides = overrides or {}
    unknown = set(overrides) - {m.path for m in (*SUITES[suite], _FAILURES)}
    if unknown:
        raise EvalInputError(f"--tolerance: no metric {', '.join(sorted(unknown))} in {suite}")
    changes = []
    for metric in (*SUITES[suite], _FAILURES):
        a, b = _get(base, metric.path), _get(new, metric.path)
        if a is None or b is None:
            continue
        default = (
            TIME_TOLERANCE
            if metric.timing
            else 0.0
            if metric is _FAILURES
            else (RATE_TOLERANCE if rate_tolerance is None else rate_tolerance)
        )
        tolerance = overrides.get(metric.path, default)
        changes.append(Change(metric.path, a, b, tolerance, _verdict(metric, a, b, tolerance)))
    return suite, changes


def _verdict(metric: Metric, base: float, new: float, tolerance: float) -> str:
    gain = (new - base) if metric.higher_is_better else (base - new)
    if gain == 0:
        return "unchanged"
    allowed = tolerance * abs(base) if metric.timing else tolerance
    if gain > 0:
        return "improved"
    return "regressed" if -gain > allowed + 1e-12 else "within tolerance"


def _get(report: dict, path: str) -> float | None:
    value: object = report
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def flipped_items(suite: str, base: dict, new: dict) -> tuple[list[str], list[str]]:
    """(items now worse, items now better), by each suite's item key."""

    def key_and_good(item: dict) -> tuple[str, float]:
        if suite == "asr":
            mode = base.get("mode", "streaming")
            return item["audio"], -item[mode]["words"]["rate"]
        if suite == "intents":
            return item["text"], float(item["correct"])
        if suite == "qa":
            return item["call"], sum(a["agree"] for a in item["answers"]) / len(item["answers"])
        return item["name"], float(item["passed"])

    before = dict(key_and_good(i) for i in base.get("items", []))
    worse, better = [], []
    for item in new.get("items", []):
        key, good = key_and_good(item)
        if key in before and good < before[key]:
            worse.append(key)
        elif key in before and good > before[key]:
            better.append(key)
    return worse, better


def load_report(path: Path) -> dict:
    """A report JSON of any suite; ``EvalInputError`` naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read report ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise EvalInputError(f"{path}: a report must be a JSON object")
    suite_of(data, str(path))
    return data
