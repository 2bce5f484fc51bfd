"""Sign-in, roles and the audit log (``voicebot.auth.accounts``; over HTTP:
``voicebot.server.access``)."""

from voicebot.auth.accounts import (
    ROLES,
    SCRAPE,
    Accounts,
    AuditAction,
    Principal,
    Role,
    SessionPolicy,
    TargetKind,
    audit,
    cli_actor,
    read_secret,
    roles_from,
)

__all__ = [
    "ROLES",
    "SCRAPE",
    "Accounts",
    "AuditAction",
    "Principal",
    "Role",
    "SessionPolicy",
    "TargetKind",
    "audit",
    "cli_actor",
    "read_secret",
    "roles_from",
]
