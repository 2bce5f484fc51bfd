"""`voicebot eval ...`: the evaluation suites."""

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="run an evaluation suite and write a report")
    sub = evaluate.add_subparsers(title="suites", metavar="SUITE", required=True)
    intents = sub.add_parser("intents", help="intent accuracy, F1, OOS, calibration")
    intents.add_argument("--manifest", type=Path, required=True, help="intent manifest (JSONL)")
    intents.add_argument("--pack", default="bank", help="pack name or YAML path")
    intents.add_argument("--report", type=Path, required=True, help="report JSON to write")
    intents.set_defaults(func=_intents)


def _intents(args: argparse.Namespace) -> int:
    from voicebot.dialog.cli import load_classifier
    from voicebot.eval.intents import evaluate_intents

    pack, classifier = load_classifier(args.pack)
    report = evaluate_intents(args.manifest, pack, classifier, args.report)
    print(
        f"{report['n']} utterances: accuracy {report['accuracy']:.3f}, macro-F1 "
        f"{report['macro_f1']:.3f}, OOS recall {report['oos_recall']:.3f} precision "
        f"{report['oos_precision']:.3f}, ECE {report['ece_in_scope']:.3f}, "
        f"{report['ms_per_utterance']:.1f} ms/utterance"
    )
    for issue in report["issues"]:
        print(f"not evaluated: {issue}")
    print(f"wrote {args.report} and {args.report.with_suffix('.md')}")
    return 0
