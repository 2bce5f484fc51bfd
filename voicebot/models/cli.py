"""``voicebot models list|prepare|info``: see and fix the model setup before a call needs it."""

import argparse
import sys

from voicebot.errors import VoicebotError
from voicebot.models.inventory import list_models, model_info, prepare
from voicebot.models.registry import MODELS


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``models`` command; each action dispatches through ``args.func(args)``."""
    models = commands.add_parser(
        "models",
        help="list, prepare and inspect the offline models",
        description="Models come from pinned packages (offline); some must be prepared once.",
    )
    actions = models.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="known models: installed, prepared, licence")
    listing.set_defaults(func=_list)

    prep = actions.add_parser("prepare", help="make models ready to load (joins split weights)")
    prep.add_argument("names", nargs="*", metavar="NAME", help="default: all known models")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.set_defaults(func=_prepare)

    convert = actions.add_parser(
        "convert",
        help="convert a CTranslate2 Whisper into a transformers directory (for --asr torch:)",
        description="Converts once into the model cache and prints the directory; "
        "transformers' WhisperForConditionalGeneration.from_pretrained loads it.",
    )
    convert.add_argument("name", metavar="NAME|DIR", help="packaged name or CTranslate2 directory")
    convert.set_defaults(func=_convert)

    info = actions.add_parser("info", help="path, files, sizes, packages and licence of a model")
    info.add_argument("name", metavar="NAME")
    info.set_defaults(func=_info)


def _list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "INSTALLED", "PREPARED", "PACKAGES", "LICENCE")]
    for state in list_models():
        spec = state.spec
        rows.append(
            (
                spec.name,
                spec.kind,
                _yes_no(state.installed),
                _yes_no(state.prepared),
                ", ".join(spec.packages),
                spec.licence,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for *cells, licence in rows:  # the licence, last and longest, is left unpadded
        print("  ".join([*(c.ljust(w) for c, w in zip(cells, widths, strict=True)), licence]))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """One line per model; a failing model is reported and the others still prepared."""
    status = 0
    for name in args.names or list(MODELS):
        try:
            lines = prepare([name], progress=False if args.quiet else None)
        except VoicebotError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            status = max(status, exc.exit_code)
            continue
        print(*lines, sep="\n")
    return status


def _convert(args: argparse.Namespace) -> int:
    from voicebot.models.convert import torch_model_dir  # imports torch: only when asked

    print(torch_model_dir(args.name))
    return 0


def _info(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    for key in ("name", "kind", "description", "packages", "licence", "installed", "prepared"):
        value = info[key]
        if isinstance(value, bool):
            value = _yes_no(value)
        elif isinstance(value, list):
            value = ", ".join(value)
        print(f"{key + ':':<13}{value}")
    path = info["path"]
    if path is None:  # say how to get there
        fix = (
            f"voicebot models prepare {info['name']}"
            if info["installed"]
            else "pip install " + " ".join(info["packages"])
        )
        path = f"- (run `{fix}`)"
    print(f"{'path:':<13}{path}")
    if info["files"]:
        print("files:")
        width = max(len(name) for name in info["files"])
        for name, size in info["files"].items():
            print(f"  {name:<{width}}  {size:>15,}")
        print(f"{'total:':<13}{info['total_bytes']:,} bytes")
    for key, value in info.get("config", {}).items():
        print(f"config {key}: {value}")
    return 0


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
