"""`voicebot eval qa`: agreement with a reviewer's labels, per criterion, form and split."""

import json
import shutil
from pathlib import Path

from voicebot.cli import main
from voicebot.eval.compare import compare
from voicebot.eval.qa import evaluate_qa
from voicebot.qa.criteria import CRITERIA

QA_DIR = Path(__file__).resolve().parents[1] / "eval" / "qa"
CALL = "real-bank-check-balance"  # a recorded call: balance after verification, no offer


def labels_of(call: str) -> dict:
    for line in (QA_DIR / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["call"] == f"calls/{call}.json":
            return entry["labels"]
    raise AssertionError(f"{call} is not labelled")


def test_agreement_counts_every_answer_and_bad_lines_are_issues(tmp_path):
    (tmp_path / "calls").mkdir()
    shutil.copy(QA_DIR / "calls" / f"{CALL}.json", tmp_path / "calls" / f"{CALL}.json")
    shipped = labels_of(CALL)
    flipped = {"bot": dict(shipped["bot"], offered_further_help="pass")}  # one disagreement
    unknown = {"bot": dict(shipped["bot"], greting="pass")}
    lines = [
        {"call": f"calls/{CALL}.json", "split": "a", "labels": shipped},
        {"call": f"calls/{CALL}.json", "split": "b", "labels": flipped},
        {"call": f"calls/{CALL}.json", "labels": unknown},
        {"call": "calls/missing.json", "labels": shipped},
        {"call": f"calls/{CALL}.json", "labels": {"bot": dict(shipped["bot"], greeting="ok")}},
    ]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    report = evaluate_qa(labels, tmp_path / "qa.json")
    n = len(CRITERIA)
    assert (report["n"], report["answers"]) == (2, 2 * n)
    assert report["agreement"] == round((2 * n - 1) / (2 * n), 3)
    offered = report["per_criterion"]["offered_further_help"]
    assert offered["agreement"] == 0.5 and offered["confusion"] == {
        "fail": {"fail": 1},
        "pass": {"fail": 1},
    }
    assert offered["disagreements"][0]["scorer_says"].startswith("never asked")
    assert report["by_split"]["a"]["agreement"] == 1.0
    assert report["by_split"]["b"]["per_criterion"]["offered_further_help"] == 0.0
    assert report["by_split"]["b"]["outcome_agreement"] == 1.0  # the part passes either way
    assert report["failures"] == 4
    where = [issue.split(": ", 1)[0] for issue in report["issues"]]
    assert where == [f"{labels}:{k}" for k in (6, 3, 4, 5)]
    assert "greting" in report["issues"][1] and "missing.json" in report["issues"][2]
    assert "'ok' is not pass, fail or na" in report["issues"][3]
    assert (tmp_path / "qa.md").read_text().startswith("# QA scorer against human labels")
    suite, changes = compare(report, report)
    assert suite == "qa" and {c.metric for c in changes} >= {"agreement", "kappa"}


def test_the_shipped_set_is_complete(tmp_path, capsys):
    """Every call of eval/qa is labelled on every criterion of its form, and is read."""
    assert (
        main(
            [
                "eval",
                "qa",
                "--labels",
                str(QA_DIR / "labels.jsonl"),
                "--report",
                str(tmp_path / "qa.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "qa.json").read_text())
    assert report["failures"] == 0 and report["n"] == len(list((QA_DIR / "calls").glob("*.json")))
    assert set(report["by_split"]) == {"dev", "test", "test2"}
    assert report["per_criterion"].keys() == CRITERIA.keys()
    assert "agreement" in capsys.readouterr().out
