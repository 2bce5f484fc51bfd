"""``voicebot privacy erase|purge``: remove a caller's or a call's every trace, or old calls."""

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    from voicebot.handoff.cli import add_store_options

    privacy = commands.add_parser("privacy", help="erase a caller or a call; purge old calls")
    sub = privacy.add_subparsers(title="actions", metavar="ACTION", required=True)
    erase = sub.add_parser(
        "erase",
        help="remove every trace of a caller or a call (database, recordings, transcripts, "
        "spool, webhook bodies)",
    )
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--caller", metavar="NUMBER", help="every call from this caller ID")
    who.add_argument("--call", metavar="ID", help="one call")
    for parser in (erase, purge := sub.add_parser("purge", help="erase calls past retention")):
        add_store_options(parser)
        parser.add_argument("--no-db", action="store_true", help="files only: no database")
        parser.add_argument(
            "--data-dir",
            type=Path,
            action="append",
            metavar="DIR",
            help="folder of recordings, transcripts and the spool, searched recursively "
            "(repeatable; default: var)",
        )
    purge.add_argument(
        "--older-than",
        metavar="AGE",
        help="e.g. 90d, 36h, 2w (default: each call's pack retention_days, else "
        "$VOICEBOT_RETENTION_DAYS, else 90 days)",
    )
    erase.set_defaults(func=_erase)
    purge.set_defaults(func=_purge)


def _open(args: argparse.Namespace):  # -> Store | None
    if args.no_db:
        return None
    from voicebot.store.store import Store

    return Store(args.db)


def _erase(args: argparse.Namespace) -> int:
    from voicebot.auth import cli_actor
    from voicebot.privacy.retention import erase_call, erase_caller

    store = _open(args)
    folders = args.data_dir or [Path("var")]
    try:
        if args.caller:
            erasure = erase_caller(store, args.caller, folders, actor=cli_actor())
        else:
            erasure = erase_call(store, args.call, folders, actor=cli_actor())
    finally:
        if store is not None:
            store.close()
    print(f"erased {erasure.describe()}: {', '.join(erasure.calls)}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from voicebot.auth import cli_actor
    from voicebot.privacy.retention import parse_age, purge

    older_than = parse_age(args.older_than) if args.older_than else None
    store = _open(args)
    try:
        erasure = purge(store, args.data_dir or [Path("var")], older_than, actor=cli_actor())
    finally:
        if store is not None:
            store.close()
    print(f"purged {erasure.describe()}")
    return 0
