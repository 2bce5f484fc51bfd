"""Who may do what: users and roles, machine tokens, desktop sessions, and the audit log.

- **Users** (agents, supervisors, admins) sign in with a password, hashed with argon2id
  (argon2-cffi's RFC 9106 parameters; rehashed at sign-in when those change).
- **Tokens** are for machines (``/api/*`` clients): ``vb_<id>_<secret>``, shown once, stored
  as the SHA-256 of the secret (random and long, so a slow hash buys nothing and would cost
  every request), with a role, an optional expiry and a revocation time.
- **Sessions** are server-side rows keyed by the SHA-256 of the cookie value, with an
  absolute and an idle lifetime and their own CSRF token. Changing a password or disabling a
  user deletes their sessions: they are signed out everywhere at once.
- **Audit**: ``audit(store, actor, action, target_kind, target_id, detail)`` appends one row;
  other modules call it whenever someone views, listens to, claims, closes, exports or erases
  a call, recording or handoff.

Every method here does database work: the server calls them from worker threads.
"""

import functools
import getpass
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import SQLAlchemyError

from voicebot.errors import AuthError, StoreError

if TYPE_CHECKING:  # the store pulls in the audio stack: commands that only list users skip it
    from voicebot.store.store import Store

log = logging.getLogger(__name__)

Role = Literal["agent", "supervisor", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)  # each may do what the ones before it may
SCRAPE = "metrics"  # the role of the /metrics scrape token (configured, not in the database)

AuditAction = Literal[
    # what someone did with call data
    "viewed",
    "listened",
    "claimed",
    "closed",
    "answered",  # talked to the caller through the desktop's softphone
    "exported",
    "erased",
    # sign-in and account changes
    "signed_in",
    "sign_in_refused",
    "signed_out",
    "user_added",
    "user_changed",
    "token_created",
    "token_revoked",
]
TargetKind = Literal["call", "recording", "handoff", "queue", "caller", "user", "token"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # no ":": "token:x" is a machine
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_HASHER = PasswordHasher()


@dataclass(frozen=True)
class SessionPolicy:
    ttl_s: float = 12 * 3600.0  # a shift; then sign in again
    idle_s: float = 2 * 3600.0  # unused this long: signed out
    touch_s: float = 60.0  # last-seen is written at most this often (one write a minute)


@dataclass(frozen=True)
class Principal:
    """Who a request comes from. ``name`` is what the audit log and the desk record: a user
    name, ``token:<name>`` for a machine token, ``metrics`` for the scrape token."""

    name: str
    role: str  # one of ROLES, or SCRAPE
    kind: Literal["user", "token", "scrape"]
    csrf: str | None = None  # a signed-in session's CSRF token (users only)
    session_hash: str | None = None

    def may(self, roles: frozenset[str]) -> bool:
        return self.role in roles


def roles_from(role: Role) -> frozenset[str]:
    """``role`` and every role above it: what a route open to ``role`` admits."""
    return frozenset(ROLES[ROLES.index(role) :])


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise AuthError(
            f"invalid name {name[:70]!r}: 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r} (one of: {', '.join(ROLES)})")
    return role  # type: ignore[return-value]


def check_password(name: str, password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"the password must have at most {MAX_PASSWORD} characters")
    if password.lower() == name.lower():
        raise AuthError("the password must not be the user name")
    return password


@functools.cache
def _dummy_hash() -> str:
    """What an unknown name is checked against, so that it costs a real user's time."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def audit(
    store: "Store",
    actor: str | Principal,
    action: AuditAction,
    target_kind: TargetKind,
    target_id: str,
    detail: dict[str, Any] | None = None,
    *,
    call_id: str | None = None,
) -> None:
    """Append one entry to the audit log (blocking: call it from a worker thread).

    ``actor``: a ``Principal``, or a name (``cli_actor()`` for commands, ``"system"`` for
    jobs). ``call_id`` links the entry to a call for ``voicebot audit --call``; it defaults
    to ``target_id`` for calls and recordings. ``detail`` must hold no personal data (no
    caller numbers, no transcript text): the log outlives erasure. Raises ``StoreError``
    when the database cannot take it; a caller that shows call data should then refuse.
    """
    if action not in get_args(AuditAction) or target_kind not in get_args(TargetKind):
        raise ValueError(f"unknown audit action or target: {action!r} {target_kind!r}")
    name = actor.name if isinstance(actor, Principal) else actor
    if call_id is None and target_kind in ("call", "recording"):
        call_id = target_id
    row = {
        "at": time.time(),
        "actor": name[:128],
        "action": action,
        "target_kind": target_kind,
        "target_id": target_id[:128],
        "call_id": call_id,
        "detail": detail or {},
    }
    try:
        store.add_audit(row)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot write the audit log: {exc.__class__.__name__}") from exc


def cli_actor() -> str:
    """The audit actor of a command run in a terminal: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"cli:uid{os.getuid()}"


def read_secret(flag: str, inline: str | None, path: Path | None, env: str) -> str | None:
    """A secret from ``--x-file PATH``, ``$ENV``, ``$ENV_FILE`` or (warned) ``--x VALUE``.

    A value on the command line is visible to every user of the machine (``ps``) and stays
    in shell history, so it still works but logs a warning naming the safer ways."""
    if path is not None:
        return _read_file(path, flag + "-file")
    if inline:
        log.warning(
            "%s on the command line is visible to other users (ps, shell history): "
            "set $%s or use %s-file instead",
            flag,
            env,
            flag,
        )
        return inline
    if os.environ.get(env):
        return os.environ[env]
    if os.environ.get(env + "_FILE"):
        return _read_file(Path(os.environ[env + "_FILE"]), f"${env}_FILE")
    return None


def _read_file(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise AuthError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not value:
        raise AuthError(f"{what} {path} is empty")
    return value


class Accounts:
    """Users, tokens and sessions over a ``Store`` (every method is blocking)."""

    def __init__(
        self, store: "Store", policy: SessionPolicy | None = None, *, clock=time.time
    ) -> None:
        self.store = store
        self.policy = policy or SessionPolicy()
        self._clock = clock

    # --- users ---------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str) -> None:
        check_name(name)
        check_role(role)
        if self.store.get_user(name) is not None:
            raise AuthError(f"user {name!r} already exists (voicebot users passwd to reset)")
        self.store.add_user(name, role, _HASHER.hash(check_password(name, password)))

    def set_password(self, name: str, password: str) -> None:
        hashed = _HASHER.hash(check_password(name, password))
        self._change(name, password_hash=hashed)

    def set_disabled(self, name: str, disabled: bool) -> None:
        self._change(name, disabled=disabled)

    def _change(self, name: str, **values: Any) -> None:
        if not self.store.update_user(name, **values):
            raise AuthError(f"no user {name!r} (voicebot users list shows them)")

    def sign_in(self, name: str, password: str) -> tuple[Principal, str] | None:
        """A new session for the right name and password: (principal, cookie value). None
        for anything else (unknown, disabled, wrong), after the same argon2 work, so the
        answer's timing does not tell which."""
        user = self.store.get_user(name) if _NAME.fullmatch(name) else None
        stored = user["password_hash"] if user else _dummy_hash()
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user["disabled"]:
            return None
        if _HASHER.check_needs_rehash(stored):
            self.store.update_user(name, password_hash=_HASHER.hash(password))
        cookie, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._clock()
        session_hash = _sha256(cookie)
        self.store.add_session(
            {
                "session_hash": session_hash,
                "user_name": name,
                "csrf": csrf,
                "created_at": now,
                "expires_at": now + self.policy.ttl_s,
                "last_seen_at": now,
            }
        )
        return Principal(name, user["role"], "user", csrf, session_hash), cookie

    def session(self, cookie: str) -> Principal | None:
        """The signed-in user of a session cookie, or None (expired, idle, disabled, forged)."""
        session_hash = _sha256(cookie)
        row = self.store.get_session(session_hash)
        now = self._clock()
        if row is None or row["disabled"]:
            return None
        if now >= row["expires_at"] or now - row["last_seen_at"] >= self.policy.idle_s:
            self.store.delete_session(session_hash)
            return None
        if now - row["last_seen_at"] >= self.policy.touch_s:
            self.store.touch_session(session_hash, now)
        return Principal(row["user_name"], row["role"], "user", row["csrf"], session_hash)

    def sign_out(self, principal: Principal) -> None:
        if principal.session_hash is not None:
            self.store.delete_session(principal.session_hash)

    # --- machine tokens ------------------------------------------------------------------

    def create_token(self, name: str, role: str, expires_in_s: float | None) -> tuple[str, str]:
        """A new token: (the token to hand over, shown only now; its id)."""
        check_name(name)
        check_role(role)
        token_id, secret, now = secrets.token_hex(6), secrets.token_urlsafe(32), self._clock()
        self.store.add_token(
            {
                "token_id": token_id,
                "name": name,
                "role": role,
                "secret_hash": _sha256(secret),
                "created_at": now,
                "expires_at": None if expires_in_s is None else now + expires_in_s,
                "revoked_at": None,
            }
        )
        return f"vb_{token_id}_{secret}", token_id

    def revoke_token(self, token_id_or_name: str) -> int:
        revoked = self.store.revoke_tokens(token_id_or_name, self._clock())
        if not revoked:
            raise AuthError(f"no live token with id or name {token_id_or_name!r}")
        return revoked

    def token(self, bearer: str) -> Principal | None:
        """The machine behind a bearer token, or None (unknown, revoked, expired, forged)."""
        parts = bearer.split("_", 2)
        if len(parts) != 3 or parts[0] != "vb":
            return None
        row = self.store.get_token(parts[1])
        if row is None or not hmac.compare_digest(row["secret_hash"], _sha256(parts[2])):
            return None
        if row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and self._clock() >= row["expires_at"]:
            return None
        return Principal(f"token:{row['name']}", row["role"], "token")

    def configured(self) -> bool:
        """Whether anyone at all can sign in (an enabled user or a live token)."""
        return self.store.count_principals(self._clock()) > 0
