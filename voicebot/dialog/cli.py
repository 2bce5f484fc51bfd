"""`voicebot intents train|classify`: the pack's classifier from the command line."""

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    intents = commands.add_parser("intents", help="train and try a pack's intent classifier")
    sub = intents.add_subparsers(title="actions", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train (or reuse the cached) classifier of a pack")
    train.add_argument("--pack", default="bank", help="pack name or YAML path")
    train.add_argument("--force", action="store_true", help="retrain even if cached")
    train.set_defaults(func=_train)
    classify = sub.add_parser("classify", help="classify one text")
    classify.add_argument("--pack", default="bank", help="pack name or YAML path")
    classify.add_argument("text")
    classify.add_argument("--json", action="store_true", help="all scores as JSON")
    classify.set_defaults(func=_classify)


def load_classifier(pack_name: str, *, retrain: bool = False):
    """The pack and its (cached) classifier; shared by the CLI commands that need one."""
    from voicebot.dialog.embeddings import SentenceEmbedder
    from voicebot.dialog.intent_classifier import IntentClassifier
    from voicebot.dialog.pack import load_pack

    pack = load_pack(pack_name)
    return pack, IntentClassifier.for_pack(pack, SentenceEmbedder(), retrain=retrain)


def _train(args: argparse.Namespace) -> int:
    pack, classifier = load_classifier(args.pack, retrain=args.force)
    head = classifier.head
    print(
        f"{pack.name}: {len(pack.intents)} intents, cross-validated accuracy "
        f"{head.cv_accuracy:.3f}, temperature {head.temperature:.2f}, "
        f"out-of-scope below confidence {head.threshold:.2f}"
    )
    return 0


def _classify(args: argparse.Namespace) -> int:
    _, classifier = load_classifier(args.pack)
    result = classifier.classify(args.text)
    if args.json:
        top = dict(sorted(result.scores.items(), key=lambda kv: -kv[1])[:5])
        print(
            json.dumps(
                {
                    "intent": result.intent,
                    "confidence": result.confidence,
                    "margin": result.margin,
                    "top": top,
                },
                indent=2,
            )
        )
    else:
        print(f"{result.intent}  confidence {result.confidence:.2f}  margin {result.margin:.2f}")
    return 0
