"""`voicebot models list|prepare|info`."""

import argparse
import json

from voicebot.models import list_models, model_info, prepare


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list, prepare and inspect the models")
    sub = models.add_subparsers(title="actions", metavar="ACTION", required=True)
    sub.add_parser("list", help="known models, whether installed and ready").set_defaults(
        func=_list
    )
    prep = sub.add_parser("prepare", help="assemble model files in the cache (done once)")
    prep.add_argument("names", nargs="*", help="models to prepare (default: all)")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(func=_prepare)
    info = sub.add_parser("info", help="paths, files, sizes, packages and licence of a model")
    info.add_argument("name")
    info.set_defaults(func=_info)


def _list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "STATE", "PACKAGES", "LICENCE")]
    for s in list_models():
        state = "ready" if s.ready else ("installed" if s.installed else "missing")
        if s.installed and not s.ready:
            state = "needs prepare"
        rows.append((s.spec.name, s.spec.kind, state, " + ".join(s.spec.packages), s.spec.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4])
    return 0


def _prepare(args: argparse.Namespace) -> int:
    for line in prepare(args.names or None, progress=False if args.quiet else None):
        print(line)
    return 0


def _info(args: argparse.Namespace) -> int:
    print(json.dumps(model_info(args.name), indent=2))
    return 0
