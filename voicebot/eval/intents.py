"""`voicebot eval intents`: accuracy, macro-F1, per-intent P/R, confusion, OOS P/R, ECE."""

import time
from pathlib import Path

from tqdm import tqdm

from voicebot.dialog.base import IntentClassifier
from voicebot.dialog.pack import OUT_OF_SCOPE, Pack
from voicebot.eval.manifest import Issue, read_jsonl
from voicebot.eval.metrics import expected_calibration_error, intent_scores
from voicebot.eval.report import (
    confusion_heatmap,
    finish,
    markdown_table,
    plot_path,
    reliability_diagram,
    write_markdown,
)


def evaluate_intents(
    manifest: Path, pack: Pack, classifier: IntentClassifier, report_path: Path
) -> dict:
    """Classify every manifest line; lines with unknown labels are issues, not crashes."""
    entries, issues = read_jsonl(manifest, ("text", "intent"))
    known = set(pack.intents) | {OUT_OF_SCOPE}
    items, refs, preds, confs = [], [], [], []
    started = time.perf_counter()
    for entry in tqdm(entries, desc=f"intents {pack.name}", unit="utt", leave=False):
        ref = entry.data["intent"]
        if ref not in known:
            issues.append(
                Issue(f"{manifest}:{entry.line}", f"unknown intent {ref!r} for pack {pack.name}")
            )
            continue
        result = classifier.classify(entry.data["text"])
        refs.append(ref)
        preds.append(result.intent)
        confs.append(result.confidence)
        items.append(
            {
                **entry.data,
                "line": entry.line,
                "predicted": result.intent,
                "confidence": round(result.confidence, 4),
                "margin": round(result.margin, 4),
                "correct": ref == result.intent,
            }
        )
    elapsed = time.perf_counter() - started
    report = {
        **intent_scores(refs, preds, confs),
        "pack": pack.name,
        "manifest": str(manifest),
        "ms_per_utterance": 1000 * elapsed / max(len(items), 1),
    }
    # Calibration of the confidence the bot acts on: over predictions that claim an intent.
    claimed = _claimed(items)
    report["ece_in_scope"] = expected_calibration_error(
        [i["confidence"] for i in claimed], [i["correct"] for i in claimed]
    )
    return finish(report_path, report, issues, items, _write_markdown)


def _claimed(items: list[dict]) -> list[dict]:
    return [i for i in items if i["predicted"] != OUT_OF_SCOPE]


def _write_markdown(report_path: Path, report: dict) -> None:
    claimed = _claimed(report["items"])
    heatmap = confusion_heatmap(
        plot_path(report_path, "confusion"), report["confusion"], f"{report['pack']} intents"
    )
    reliability = reliability_diagram(
        plot_path(report_path, "reliability"),
        [i["confidence"] for i in claimed],
        [i["correct"] for i in claimed],
    )
    per_intent = [
        [label, s["precision"], s["recall"], s["f1"], s["support"]]
        for label, s in sorted(report["per_intent"].items())
    ]
    errors = [
        [i["line"], i["text"], i["intent"], i["predicted"], i["confidence"]]
        for i in report["items"]
        if not i["correct"]
    ]
    sections = [
        f"# Intent eval: {report['pack']}",
        f"Manifest `{report['manifest']}`, {report['n']} utterances, "
        f"{report['failures']} lines not evaluated.",
        markdown_table(
            ["accuracy", "macro-F1", "OOS recall", "OOS precision", "ECE (claimed)", "ms/utt"],
            [
                [
                    report["accuracy"],
                    report["macro_f1"],
                    report["oos_recall"],
                    report["oos_precision"],
                    report["ece_in_scope"],
                    report["ms_per_utterance"],
                ]
            ],
        ),
        "## Per intent",
        markdown_table(["intent", "precision", "recall", "F1", "support"], per_intent),
        f"![confusion]({heatmap.name})",
        f"![reliability]({reliability.name})",
        "## Errors",
        markdown_table(["line", "text", "reference", "predicted", "confidence"], errors)
        if errors
        else "None.",
    ]
    write_markdown(report_path, sections, report["issues"])
