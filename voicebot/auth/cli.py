"""``voicebot users``, ``voicebot tokens`` and ``voicebot audit``: who may sign in, the
machines' tokens, and what everyone did. They work on the database directly (``--db``), so
whoever runs them needs the database's credentials; each change is audited as ``cli:USER``.

Passwords are read from the terminal (asked twice) or, for scripts, one line on standard
input (``--password-stdin``): never from the command line, where ``ps`` would show them.
"""

import argparse
import getpass
import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from voicebot.auth.accounts import ROLES, Accounts, audit, cli_actor
from voicebot.errors import AuthError


def register(commands: argparse._SubParsersAction) -> None:
    from voicebot.handoff.cli import add_store_options

    users = commands.add_parser("users", help="people who sign in to the desktop and the API")
    sub = users.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    passwd = sub.add_parser("passwd", help="set a user's password (signs them out everywhere)")
    passwd.add_argument("name")
    for parser in (add, passwd):
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
    disable = sub.add_parser("disable", help="stop a user signing in (signs them out now)")
    disable.add_argument("name")
    enable = sub.add_parser("enable", help="let a disabled user sign in again")
    enable.add_argument("name")
    listing = sub.add_parser("list", help="users, roles and whether they are disabled")
    for parser, func in ((add, _add), (passwd, _passwd), (disable, _disable), (enable, _enable)):
        parser.set_defaults(func=func)
    listing.set_defaults(func=_list_users)
    for parser in (add, passwd, disable, enable, listing):
        add_store_options(parser)

    tokens = commands.add_parser("tokens", help="bearer tokens for machine clients of /api")
    sub = tokens.add_subparsers(title="actions", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="a new token, printed once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", default="api", help="who uses it (shown in the audit log)")
    create.add_argument(
        "--expires-in", default="90d", help="lifetime: 12h, 30d, 52w or never (default 90d)"
    )
    create.set_defaults(func=_create_token)
    revoke = sub.add_parser("revoke", help="revoke a token by id, or all tokens of a name")
    revoke.add_argument("token", metavar="ID_OR_NAME")
    revoke.set_defaults(func=_revoke_token)
    listing = sub.add_parser("list", help="tokens (never their secrets)")
    listing.set_defaults(func=_list_tokens)
    for parser in (create, revoke, listing):
        add_store_options(parser)

    log = commands.add_parser("audit", help="who viewed, listened to, claimed or erased what")
    log.add_argument("--since", help="from this time on: 24h, 7d, or 2026-12-01[T10:00]")
    log.add_argument("--call", metavar="ID", help="only entries about this call")
    log.add_argument("--limit", type=int, default=1000, help="the newest N entries")
    log.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_options(log)
    log.set_defaults(func=_audit)


@contextmanager
def _accounts(args: argparse.Namespace) -> Iterator[Accounts]:
    """The accounts in ``--db``, closed after the command."""
    from voicebot.handoff.cli import db_url
    from voicebot.store.store import Store

    store = Store(db_url(args))
    try:
        yield Accounts(store)
    finally:
        store.close()


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise AuthError("the two passwords differ")
    return first


def _add(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        accounts.add_user(args.name, args.role, _password(args))
        audit(accounts.store, cli_actor(), "user_added", "user", args.name, {"role": args.role})
    print(f"added {args.role} {args.name}")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        accounts.set_password(args.name, _password(args))
        audit(accounts.store, cli_actor(), "user_changed", "user", args.name, {"password": "set"})
    print(f"password of {args.name} changed; their sessions are signed out")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> None:
    with _accounts(args) as accounts:
        accounts.set_disabled(args.name, disabled)
        detail = {"disabled": disabled}
        audit(accounts.store, cli_actor(), "user_changed", "user", args.name, detail)


def _disable(args: argparse.Namespace) -> int:
    _set_disabled(args, True)
    print(f"disabled {args.name}; their sessions are signed out")
    return 0


def _enable(args: argparse.Namespace) -> int:
    _set_disabled(args, False)
    print(f"enabled {args.name}")
    return 0


def _list_users(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        rows = accounts.store.list_users()
    if not rows:
        print("no users (voicebot users add NAME --role admin)")
    for r in rows:
        state = "  DISABLED" if r["disabled"] else ""
        print(f"{r['name']:24}  {r['role']:10}  since {_when(r['created_at'])}{state}")
    return 0


_DURATION = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``12h``, ``30d``, ``52w`` in seconds."""
    found = _DURATION.fullmatch(text.strip())
    if not found or int(found[1]) == 0:
        raise AuthError(f"not a duration: {text!r} (e.g. 12h, 30d, 52w)")
    return int(found[1]) * _UNITS[found[2]]


def _create_token(args: argparse.Namespace) -> int:
    lifetime = None if args.expires_in == "never" else parse_duration(args.expires_in)
    with _accounts(args) as accounts:
        token, token_id = accounts.create_token(args.name, args.role, lifetime)
        detail = {"name": args.name, "role": args.role, "expires_in_s": lifetime}
        audit(accounts.store, cli_actor(), "token_created", "token", token_id, detail)
    expiry = "never expires" if lifetime is None else f"expires in {args.expires_in}"
    print(f"token {token_id} ({args.role}, {expiry}); shown only now:", file=sys.stderr)
    print(token)
    return 0


def _revoke_token(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        count = accounts.revoke_token(args.token)
        audit(accounts.store, cli_actor(), "token_revoked", "token", args.token, {"count": count})
    print(f"revoked {count} token(s)")
    return 0


def _list_tokens(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        rows = accounts.store.list_tokens()
    now = time.time()
    if not rows:
        print("no tokens (voicebot tokens create --role ROLE --name NAME)")
    for r in rows:
        if r["revoked_at"] is not None:
            state = f"revoked {_when(r['revoked_at'])}"
        elif r["expires_at"] is not None and r["expires_at"] <= now:
            state = f"expired {_when(r['expires_at'])}"
        elif r["expires_at"] is None:
            state = "never expires"
        else:
            state = f"until {_when(r['expires_at'])}"
        print(f"{r['token_id']}  {r['name']:20}  {r['role']:10}  {state}")
    return 0


def parse_since(text: str, now: float) -> float:
    """``24h``/``7d`` ago, or an ISO date or time (UTC when it names no zone)."""
    if _DURATION.fullmatch(text.strip()):
        return now - parse_duration(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise AuthError(f"--since: not a duration or a date: {text!r}") from exc
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _audit(args: argparse.Namespace) -> int:
    since = parse_since(args.since, time.time()) if args.since else None
    with _accounts(args) as accounts:
        rows = accounts.store.list_audit(since=since, call_id=args.call, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no audit entries" + (f" for call {args.call}" if args.call else ""))
    for r in rows:
        detail = " ".join(f"{k}={v}" for k, v in r["detail"].items())
        call = f"  (call {r['call_id']})" if r["call_id"] and r["call_id"] != r["target_id"] else ""
        print(
            f"{_when(r['at'])}  {r['actor']:20}  {r['action']:15}  "
            f"{r['target_kind']} {r['target_id']}{call}  {detail}".rstrip()
        )
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
