"""`voicebot eval qa`: how often the QA scorer agrees with a human reviewer.

The labels (JSONL, one call a line) give a reviewer's verdict on every criterion of the
call's form, for each part of the call:

    {"call": "calls/bank-lost-card.json", "split": "dev",
     "labels": {"bot": {"greeting": "pass", "correct_handoff": "na", ...}}, "note": "..."}

``call`` is a call record (the JSON of ``voicebot call --transcript``, or a stored record),
relative to the labels file; the form is the record's pack's (``intents/qa/<pack>.yaml``).
Agreement is reported as contact-center QA suites report it: per criterion (the share of
calls where the scorer gave the reviewer's verdict, with Cohen's kappa and the confusion),
and per form (every answer of every call of the form, whether the scored part passed or
failed alike, and how far the scores are apart). ``split`` (e.g. dev/test) is reported
separately too, so a held-out part shows what the scorer does on calls it was not tuned on.
"""

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sklearn.metrics import cohen_kappa_score
from tqdm import tqdm

from voicebot.eval.manifest import Issue, read_jsonl
from voicebot.eval.report import finish, grouped_bars, markdown_table, plot_path, write_markdown
from voicebot.qa.criteria import Verdict
from voicebot.qa.form import QaConfig, load_qa
from voicebot.qa.scorecard import CriterionResult, Scorecard, part_score, score_call

TARGET = 0.9


def evaluate_qa(labels_path: Path, report_path: Path) -> dict[str, Any]:
    entries, issues = read_jsonl(labels_path, required=("call",))
    forms: dict[str, QaConfig | None] = {}
    items = []
    for entry in tqdm(entries, desc="qa", unit="call", leave=False):
        where = f"{labels_path}:{entry.line}"
        try:
            items.append(_item(labels_path.parent, entry.data, forms, where))
        except _Unusable as exc:
            issues.append(Issue(where, str(exc)))
    report = summarize(items)
    report["labels"] = str(labels_path)
    return finish(report_path, report, issues, items, _write_markdown)


class _Unusable(Exception):
    """A labelled call that cannot be compared (the reason is the issue)."""


def _item(
    base: Path, data: dict[str, Any], forms: dict[str, QaConfig | None], where: str
) -> dict[str, Any]:
    path = base / data["call"]
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _Unusable(f"cannot read call record {path}: {exc}") from exc
    pack = record.get("pack") or ""
    if pack not in forms:
        forms[pack] = load_qa(pack)
    config = forms[pack]
    if config is None:
        raise _Unusable(f"pack {pack!r} has no QA form (intents/qa/{pack}.yaml)")
    card = score_call(record, config.form)
    labels = data.get("labels")
    if not isinstance(labels, dict):
        raise _Unusable("'labels' must map each part (bot, agent) to its verdicts")
    scored = {p.part for p in card.parts}
    if set(labels) != scored:
        raise _Unusable(f"labels cover the parts {sorted(labels)}, the call has {sorted(scored)}")
    answers = []
    for part in card.parts:
        human = labels[part.part]
        expected = {r.criterion for r in part.results}
        if not isinstance(human, dict) or set(human) != expected:
            got = sorted(human) if isinstance(human, dict) else human
            raise _Unusable(f"{part.part}: label every criterion {sorted(expected)}; got {got}")
        for result in part.results:
            try:
                verdict = Verdict(human[result.criterion])
            except ValueError as exc:
                given = human[result.criterion]
                why = f"{part.part}.{result.criterion}: {given!r} is not pass, fail or na"
                raise _Unusable(why) from exc
            answers.append(_answer(part.part, result, verdict))
    return {
        "call": data["call"],
        "call_id": card.call_id,
        "pack": pack,
        "form": card.form,
        "split": str(data.get("split") or "all"),
        "note": str(data.get("note") or ""),
        "answers": answers,
        "parts": _part_scores(card, answers, config.form.pass_score),
    }


def _answer(part: str, result: CriterionResult, human: Verdict) -> dict[str, Any]:
    return {
        "part": part,
        "criterion": result.criterion,
        "human": human.value,
        "scorer": result.verdict.value,
        "agree": human == result.verdict,
        "weight": result.weight,
        "critical": result.critical,
        "explanation": result.explanation,
    }


def _part_scores(card: Scorecard, answers: list[dict], pass_score: float) -> list[dict]:
    """Each part's score as the scorer gave it and as the reviewer's verdicts give it."""
    out = []
    for part in card.parts:
        human = part_score(
            part.part,
            tuple(
                CriterionResult(
                    a["criterion"], Verdict(a["human"]), a["weight"], a["critical"], "human", ""
                )
                for a in answers
                if a["part"] == part.part
            ),
            pass_score,
        )
        out.append(
            {
                "part": part.part,
                "scorer_score": part.score,
                "human_score": human.score,
                "scorer_passed": part.passed,
                "human_passed": human.passed,
            }
        )
    return out


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    answers = [a for item in items for a in item["answers"]]
    criteria = sorted({a["criterion"] for a in answers})
    report: dict[str, Any] = {
        "n": len(items),
        "answers": len(answers),
        "agreement": _share(sum(a["agree"] for a in answers), len(answers)),
        "kappa": _kappa(answers),
        "target": TARGET,
        "per_criterion": {c: _criterion(c, items) for c in criteria},
        "per_form": {
            form: _form([i for i in items if i["form"] == form])
            for form in sorted({i["form"] for i in items})
        },
        "by_split": {
            split: _form([i for i in items if i["split"] == split])
            for split in sorted({i["split"] for i in items})
        },
    }
    report["below_target"] = sorted(
        c for c, v in report["per_criterion"].items() if v["agreement"] < TARGET
    )
    return report


def _criterion(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = [(i, a) for i in items for a in i["answers"] if a["criterion"] == name]
    answers = [a for _, a in pairs]
    confusion: dict[str, Counter[str]] = {}
    for a in answers:
        confusion.setdefault(a["human"], Counter())[a["scorer"]] += 1
    return {
        "n": len(answers),
        "agreement": _share(sum(a["agree"] for a in answers), len(answers)),
        "kappa": _kappa(answers),
        "human": dict(Counter(a["human"] for a in answers)),
        "confusion": {h: dict(c) for h, c in sorted(confusion.items())},
        "disagreements": [
            {
                "call": i["call"],
                "part": a["part"],
                "human": a["human"],
                "scorer": a["scorer"],
                "scorer_says": a["explanation"],
            }
            for i, a in pairs
            if not a["agree"]
        ],
    }


def _form(items: list[dict[str, Any]]) -> dict[str, Any]:
    answers = [a for item in items for a in item["answers"]]
    parts = [p for item in items for p in item["parts"]]
    scored = [p for p in parts if p["human_score"] is not None and p["scorer_score"] is not None]
    diffs = [abs(p["human_score"] - p["scorer_score"]) for p in scored]
    return {
        "calls": len(items),
        "parts": len(parts),
        "answers": len(answers),
        "agreement": _share(sum(a["agree"] for a in answers), len(answers)),
        "outcome_agreement": _share(
            sum(p["human_passed"] == p["scorer_passed"] for p in parts), len(parts)
        ),
        "mean_abs_score_diff": round(sum(diffs) / len(diffs), 2) if diffs else 0.0,
        "scores_within_5": _share(sum(d <= 5 for d in diffs), len(diffs)),
        "per_criterion": {
            name: _share(
                sum(a["agree"] for a in answers if a["criterion"] == name),
                sum(a["criterion"] == name for a in answers),
            )
            for name in sorted({a["criterion"] for a in answers})
        },
    }


def _kappa(answers: list[dict[str, Any]]) -> float | None:
    """Cohen's kappa of the verdicts (None when a single verdict makes it undefined)."""
    human = [a["human"] for a in answers]
    scorer = [a["scorer"] for a in answers]
    if len(set(human) | set(scorer)) < 2:
        return None
    return round(float(cohen_kappa_score(human, scorer)), 3)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def _write_markdown(report_path: Path, report: dict[str, Any]) -> None:
    def kappa(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    criteria = report["per_criterion"]
    if criteria:
        grouped_bars(
            plot_path(report_path, "agreement"),
            list(criteria),
            {"agreement": [v["agreement"] for v in criteria.values()]},
            "agreement with the reviewer",
        )
    sections = [
        "# QA scorer against human labels",
        f"{report['n']} calls, {report['answers']} criterion answers: agreement "
        f"**{report['agreement']:.3f}** (target {report['target']}), kappa "
        f"{kappa(report['kappa'])}. Labels: `{report['labels']}`.",
        "## Per criterion",
        markdown_table(
            ["criterion", "n", "agreement", "kappa", "reviewer pass/fail/na", "disagreements"],
            [
                [
                    name,
                    v["n"],
                    v["agreement"],
                    kappa(v["kappa"]),
                    "/".join(str(v["human"].get(k, 0)) for k in ("pass", "fail", "na")),
                    len(v["disagreements"]),
                ]
                for name, v in criteria.items()
            ],
        ),
        "## Per form and split",
        markdown_table(
            [
                "form / split",
                "calls",
                "answers",
                "agreement",
                "pass/fail agreement",
                "mean |score diff|",
                "scores within 5",
            ],
            [
                [
                    name,
                    v["calls"],
                    v["answers"],
                    v["agreement"],
                    v["outcome_agreement"],
                    v["mean_abs_score_diff"],
                    v["scores_within_5"],
                ]
                for group in ("per_form", "by_split")
                for name, v in report[group].items()
            ],
        ),
        "## Per criterion and split",
        markdown_table(
            ["criterion", *report["by_split"]],
            [
                [name, *(v["per_criterion"].get(name, "-") for v in report["by_split"].values())]
                for name in criteria
            ],
        ),
        "## Disagreements",
        "\n".join(
            f"- `{d['call']}` {d['part']}.{name}: reviewer **{d['human']}**, scorer "
            f"{d['scorer']} ({d['scorer_says']})"
            for name, v in criteria.items()
            for d in v["disagreements"]
        )
        or "none",
    ]
    write_markdown(report_path, sections, report["issues"])
