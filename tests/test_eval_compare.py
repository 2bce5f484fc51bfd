"""`voicebot eval compare`: verdicts per metric, tolerances, and the exit status CI gates on."""

import json

import pytest

from voicebot.cli import main
from voicebot.errors import EvalInputError
from voicebot.eval.compare import compare, flipped_items, parse_tolerances


def calls_report(**overrides) -> dict:
    report = {
        "n": 2,
        "task_success": 0.80,
        "intent_accuracy": 0.90,
        "handoff_precision": 1.0,
        "handoff_recall": 0.75,
        "latency_ms": {"p50": 700.0, "p95": 900.0, "n": 10},
        "failures": 0,
        "items": [{"name": "a", "passed": True}, {"name": "b", "passed": False}],
    }
    for key, value in overrides.items():
        report[key] = value
    return report


def write(tmp_path, name, report) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return str(path)


def test_verdicts_use_absolute_tolerance_for_rates_and_relative_for_timings():
    new = calls_report(
        task_success=0.795,  # -0.005: within the default 0.01
        intent_accuracy=0.95,  # better
        handoff_recall=0.70,  # -0.05: regressed
        latency_ms={"p50": 760.0, "p95": 1000.0, "n": 10},  # +8.6% within, +11% regressed
    )
    suite, changes = compare(calls_report(), new)
    verdicts = {c.metric: c.verdict for c in changes}
    assert suite == "calls"
    assert verdicts == {
        "task_success": "within tolerance",
        "intent_accuracy": "improved",
        "handoff_precision": "unchanged",
        "handoff_recall": "regressed",
        "latency_ms.p50": "within tolerance",
        "latency_ms.p95": "regressed",
        "failures": "unchanged",
    }


def test_lower_is_better_for_error_rates_and_failures_may_not_grow():
    base = {"n": 3, "wer": 0.10, "cer": 0.05, "rtf": 0.2, "failures": 0, "items": []}
    _, changes = compare(base, {**base, "wer": 0.08, "cer": 0.07, "failures": 1})
    verdicts = {c.metric: c.verdict for c in changes}
    assert verdicts["wer"] == "improved"
    assert verdicts["cer"] == "regressed"
    assert verdicts["failures"] == "regressed"


def test_tolerances_parse_and_unknown_metrics_are_refused():
    assert parse_tolerances(["0.05", "latency_ms.p95=0.2"]) == (0.05, {"latency_ms.p95": 0.2})
    with pytest.raises(EvalInputError, match="expected a number"):
        parse_tolerances(["lots"])
    with pytest.raises(EvalInputError, match="no metric wer in calls"):
        compare(calls_report(), calls_report(), overrides={"wer": 0.1})


def test_flipped_items_are_listed_both_ways():
    new = calls_report(items=[{"name": "a", "passed": False}, {"name": "b", "passed": True}])
    assert flipped_items("calls", calls_report(), new) == (["a"], ["b"])


def test_cli_exit_status_gates_on_regressions(tmp_path, capsys):
    base = write(tmp_path, "base.json", calls_report())
    same = write(tmp_path, "same.json", calls_report(task_success=0.81))
    worse = write(tmp_path, "worse.json", calls_report(task_success=0.70))
    assert main(["eval", "compare", base, same]) == 0
    assert "no regression beyond tolerance" in capsys.readouterr().out
    assert main(["eval", "compare", base, worse]) == 1
    out = capsys.readouterr().out
    assert "regressed" in out and "REGRESSION beyond tolerance: task_success" in out
    # A looser tolerance lets the same drop through.
    assert main(["eval", "compare", base, worse, "--tolerance", "task_success=0.15"]) == 0


def test_cli_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    base = write(tmp_path, "base.json", calls_report())
    asr = write(tmp_path, "asr.json", {"n": 1, "wer": 0.1, "cer": 0.1, "rtf": 0.1})
    broken = tmp_path / "broken.json"
    broken.write_text('{"n": 1,\n  "wer": }')
    assert main(["eval", "compare", base, asr]) == 2
    assert "compare like with like" in capsys.readouterr().err
    assert main(["eval", "compare", base, str(broken)]) == 2
    assert f"{broken}:2: invalid JSON" in capsys.readouterr().err
    assert main(["eval", "compare", base, str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot read report" in capsys.readouterr().err


@pytest.mark.parametrize("suite", ["asr", "intents", "calls", "digits"])
def test_every_suite_checks_its_report_path_before_running(tmp_path, capsys, suite):
    source = "--scenarios" if suite == "calls" else "--manifest"
    status = main(["eval", suite, source, str(tmp_path / "m"), "--report", str(tmp_path)])
    assert status == 2
    assert "the report path is a directory" in capsys.readouterr().err
