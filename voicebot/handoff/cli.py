"""``voicebot handoffs list|show|deliver``: the handoff queue for operators, in a terminal."""

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime

from voicebot.errors import VoicebotError

log = logging.getLogger(__name__)


def add_store_options(parser: argparse.ArgumentParser, *, webhooks: bool = False) -> None:
    """The database flags shared by every command that records calls or reads handoffs."""
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: $VOICEBOT_DB_URL or sqlite:///var/voicebot.db)",
    )
    if webhooks:
        parser.add_argument(
            "--no-db", action="store_true", help="do not record the call in the database"
        )
        parser.add_argument(
            "--webhook",
            action="append",
            default=[],
            metavar="URL",
            help="POST handoff packets here (repeatable; default $VOICEBOT_WEBHOOK_URLS)",
        )
        parser.add_argument(
            "--alert-webhook",
            action="append",
            default=[],
            metavar="URL",
            help="POST supervisor alerts here (repeatable; default $VOICEBOT_ALERT_WEBHOOK_URLS)",
        )
        parser.add_argument(
            "--webhook-secret", help="HMAC signing key (default $VOICEBOT_WEBHOOK_SECRET)"
        )


def open_service(args: argparse.Namespace):  # -> HandoffService | None
    """The process's store, writer and webhooks from the flags (None with ``--no-db``)."""
    if getattr(args, "no_db", False):
        return None
    from voicebot.dialog.llm import LLMClient, LLMConfig
    from voicebot.handoff.service import HandoffConfig, HandoffService
    from voicebot.qa.alerts import AlertConfig
    from voicebot.qa.scorecard import LLMJudge

    wait = getattr(args, "alert_queue_wait_s", None)
    config = HandoffConfig.resolve(
        db_url(args),
        tuple(getattr(args, "webhook", ())),
        webhook_secret(args),
        tuple(getattr(args, "alert_webhook", ())),
        AlertConfig(queue_wait_s=wait) if wait is not None else None,
    )
    llm_config = LLMConfig.from_env()
    client = LLMClient(llm_config) if llm_config else None
    return HandoffService(
        config,
        client.summarize if client else None,
        LLMJudge(client) if client else None,
    )


def db_url(args: argparse.Namespace) -> str | None:
    """``--db``, warned about when it carries a password (``ps`` shows it to everyone)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        inline_password = bool(args.db and make_url(args.db).password)
    except ArgumentError:
        inline_password = False  # the store says what is wrong with it
    if inline_password:
        log.warning(
            "--db with a password is visible to other users (ps, shell history): "
            "set $VOICEBOT_DB_URL instead"
        )
    return args.db


def webhook_secret(args: argparse.Namespace) -> str | None:
    from voicebot.auth import read_secret

    inline = getattr(args, "webhook_secret", None)
    return read_secret("--webhook-secret", inline, None, "VOICEBOT_WEBHOOK_SECRET")


def register(commands: argparse._SubParsersAction) -> None:
    handoffs = commands.add_parser("handoffs", help="list and inspect calls handed to human agents")
    sub = handoffs.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the handoff queue, newest first")
    listing.add_argument("--status", choices=("queued", "claimed", "closed"))
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_options(listing)
    listing.set_defaults(func=_list)
    show = sub.add_parser("show", help="one handoff: summary, signals, transcript, webhooks")
    show.add_argument("handoff_id")
    show.add_argument("--json", action="store_true", help="the whole packet as JSON")
    add_store_options(show)
    show.set_defaults(func=_show)
    deliver = sub.add_parser(
        "deliver",
        help="deliver due webhooks now (retries included)",
        description="One attempt at each delivery that is due. Safe beside running servers: "
        "each delivery is claimed in the database first, so none is posted twice.",
    )
    add_store_options(deliver)
    deliver.add_argument("--webhook-secret", help="HMAC key (default $VOICEBOT_WEBHOOK_SECRET)")
    deliver.add_argument(
        "--now",
        action="store_true",
        help="also the deliveries waiting for their next retry (not due yet), each once",
    )
    deliver.add_argument(
        "--retry-dead",
        action="store_true",
        help="also retry deliveries that gave up (after the receiver is fixed)",
    )
    deliver.set_defaults(func=_deliver)


def _store(args: argparse.Namespace):  # -> Store
    from voicebot.store.store import Store

    return Store(db_url(args))


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.list_handoffs(args.status, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "packet"} for r in rows], indent=2))
        return 0
    if not rows:
        print("no handoffs" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(f"{'ID':12}  {'CREATED (UTC)':19}  {'STATUS':8}  {'REASON':18}  {'CALLER':14}  WANTS")
    for r in rows:
        wants = r["summary"].splitlines()[0].removeprefix("Wants: ")
        caller = r["caller_id"] or "-"
        print(
            f"{r['handoff_id']:12}  {_when(r['created_at']):19}  {r['status']:8}  "
            f"{r['reason']:18}  {caller:14}  {wants[:60]}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        row = store.get_handoff(args.handoff_id)
        deliveries = store.deliveries(args.handoff_id)
    finally:
        store.close()
    packet = row["packet"]
    if args.json:
        print(json.dumps(packet | {"status": row["status"], "agent": row["agent"]}, indent=2))
        return 0
    out = [
        f"handoff {row['handoff_id']}  call {row['call_id']}  caller {row['caller_id'] or '-'}",
        f"status: {row['status']}"
        + (f" by {row['agent']}" if row["agent"] else "")
        + (f" ({row['disposition']})" if row["disposition"] else ""),
        f"reason: {row['reason']}: {packet.get('explanation', '')}",
        "",
        row["summary"],
        "",
        "transcript:",
    ]
    for turn in packet["transcript"]:
        start = "   -  " if turn.get("start") is None else f"{turn['start']:6.1f}"
        extra = f"  ({turn['intent']})" if turn.get("intent") else ""
        out.append(f"  {start}  {turn['role']:6}  {turn['text']}{extra}")
    if packet.get("recording"):
        out.append(f"recording: {packet['recording']}")
    for d in deliveries:
        state = "delivered" if d["delivered_at"] else "DEAD" if d["dead"] else "pending"
        error = f", last error: {d['last_error']}" if d["last_error"] else ""
        out.append(f"webhook {d['url']}: {state} after {d['attempts']} attempt(s){error}")
    print("\n".join(out))
    return 0


def _deliver(args: argparse.Namespace) -> int:
    from voicebot.handoff.service import HandoffConfig
    from voicebot.handoff.webhooks import WebhookDispatcher

    secret = HandoffConfig.resolve(webhook_secret=webhook_secret(args)).webhook_secret
    if not secret:
        raise VoicebotError("no signing secret: set VOICEBOT_WEBHOOK_SECRET or --webhook-secret")
    store = _store(args)
    try:
        if args.retry_dead:
            revived = store.revive_dead_deliveries(time.time())
            print(f"retrying {revived} delivery(ies) that had given up", file=sys.stderr)
        delivered = WebhookDispatcher(store, secret).deliver_due(due_or_not=args.now)
    finally:
        store.close()
    print(f"delivered {delivered} webhook(s)", file=sys.stderr)
    return 0
