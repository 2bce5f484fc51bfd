"""Erasure and retention: every trace of a caller or a call, removed on request or with age.

A call leaves rows in the database (the call, its turns, its handoff and the webhook bodies
in the outbox, lockout counts) and files under the data folders: the recording, JSON
transcripts (``voicebot serve --transcripts``, ``voicebot call --transcript``), spooled
records and packets. ``erase_caller``/``erase_call`` find them all (rows by call id and
caller ID, files by name and by the ids inside them) and delete them; ``purge`` does the
same for calls older than their retention (the pack's ``privacy.retention_days``, else
``VOICEBOT_RETENTION_DAYS``, else 90 days). ``RetentionJob`` runs the purge daily in a
server. On SQLite deleted content is overwritten (``secure_delete``) and the write-ahead
log emptied; PostgreSQL hides the rows at once and reclaims their space by vacuum.
"""

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers

from voicebot.auth import audit
from voicebot.errors import VoicebotError
from voicebot.privacy.config import DEFAULT_RETENTION_DAYS
from voicebot.privacy.lockout import LOCK_WINDOW_S, subjects_of
from voicebot.store.store import Store

log = logging.getLogger(__name__)

# Files that are the database itself, not call data (erased through SQL).
_DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal", ".sqlite", ".sqlite3")


class NothingToEraseError(VoicebotError):
    """No call of that caller or id is anywhere: said plainly, exit status 1."""


@dataclass
class Erasure:
    """What an erasure or purge removed."""

    calls: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        rows = sum(self.rows.values())
        tables = ", ".join(f"{name} {n}" for name, n in sorted(self.rows.items()))
        return (
            f"{len(self.calls)} call(s), {rows} database row(s)"
            + (f" ({tables})" if tables else "")
            + f", {len(self.files)} file(s)"
        )


def retention_days(pack: str | None = None) -> int:
    """Days a call of ``pack`` is kept: the pack's ``privacy.retention_days``, else
    ``VOICEBOT_RETENTION_DAYS``, else 90."""
    if pack:
        from voicebot.dialog.pack import load_pack
        from voicebot.errors import PackError

        try:
            days = load_pack(pack).privacy.retention_days
        except PackError:
            days = None  # a pack no longer installed: the operator's default
        if days:
            return days
    value = os.environ.get("VOICEBOT_RETENTION_DAYS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise VoicebotError(f"VOICEBOT_RETENTION_DAYS: a whole number of days, not {value!r}")
        return int(value)
    return DEFAULT_RETENTION_DAYS


def parse_age(text: str) -> timedelta:
    """ "90d", "12h", "2w" -> a timedelta; ``VoicebotError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", text)
    if match is None or int(match[1]) < 1:
        raise VoicebotError(f"not an age: {text!r} (e.g. 90d, 36h, 2w)")
    unit = {"d": "days", "h": "hours", "w": "weeks"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def caller_variants(number: str) -> list[str]:
    """How a caller ID may have been stored: as given, as digits, and in E.164."""
    number = number.strip()
    digits = re.sub(r"[^0-9]", "", number)
    variants = {number, digits, f"+{digits}"} if digits else {number}
    try:
        parsed = phonenumbers.parse(number, "US")
        variants.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    except phonenumbers.NumberParseException:
        pass
    return sorted(v for v in variants if v and v != "+")


def erase_caller(
    store: Store | None, number: str, folders: list[Path], *, actor: str = "system"
) -> Erasure:
    """Erase every call from ``number`` (its caller ID field), in the store and the folders.
    Each erased call is written to the audit log as erased by ``actor``."""
    variants = caller_variants(number)
    rows = store.calls_from(variants) if store else []
    found = _scan(folders, lambda data: data.get("caller_id") in variants)
    call_ids = sorted({r["call_id"] for r in rows} | set(found))
    where = _where(store, folders)
    if not call_ids:
        raise NothingToEraseError(f"no calls from {number} in {where}")
    subjects = [s for v in variants for s in subjects_of(v, None)]
    return _erase(store, call_ids, rows, folders, found, subjects, actor=actor, why="caller")


def erase_call(
    store: Store | None, call_id: str, folders: list[Path], *, actor: str = "system"
) -> Erasure:
    """Erase one call: its rows, its recording, its transcripts and spooled copies."""
    rows = store.call_rows([call_id]) if store else []
    found = _scan(folders, lambda data: data.get("call_id") == call_id)
    if not rows and not found and not _named(folders, {call_id}):
        raise NothingToEraseError(f"no call {call_id!r} in {_where(store, folders)}")
    return _erase(store, [call_id], rows, folders, found, [], actor=actor, why="call")


def purge(
    store: Store | None,
    folders: list[Path],
    older_than: timedelta | None = None,
    *,
    actor: str = "system",
) -> Erasure:
    """Erase what is older than its retention (``older_than`` for every call, if given)."""
    now = datetime.now(UTC)
    days: dict[str | None, int] = {}

    def expired(pack: str | None, started_at: str) -> bool:
        if older_than is not None:
            return started_at < (now - older_than).isoformat()
        if pack not in days:
            days[pack] = retention_days(pack)
        return started_at < (now - timedelta(days=days[pack])).isoformat()

    shortest = older_than or timedelta(days=1)
    rows = store.calls_started_before((now - shortest).isoformat()) if store else []
    rows = [r for r in rows if expired(r["pack"], r["started_at"])]
    found = _scan(folders, lambda d: expired(d.get("pack"), str(d.get("started_at", "9999"))))
    call_ids = sorted({r["call_id"] for r in rows} | set(found))
    erasure = _erase(
        store, call_ids, rows, folders, found, [], purge_failures=True, actor=actor, why="retention"
    )
    # Recordings whose call is in no store any more: by age.
    cutoff = (now - (older_than or timedelta(days=retention_days()))).timestamp()
    for path in _files(folders):
        if path.suffix == ".wav" and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            erasure.files.append(path)
    return erasure


def _erase(
    store: Store | None,
    call_ids: list[str],
    rows: list[dict[str, Any]],
    folders: list[Path],
    found: dict[str, list[Path]],
    subjects: list[str],
    *,
    actor: str,
    why: str,
    purge_failures: bool = False,
) -> Erasure:
    """Remove the calls' rows and files, then say so in the audit log (by call id only: the
    log outlives the erasure, so it names no caller)."""
    erasure = Erasure(calls=call_ids)
    names = set(call_ids)
    if store is not None:
        names |= set(store.handoff_ids(call_ids)) if call_ids else set()
        before = time.time() - LOCK_WINDOW_S if purge_failures else None
        erasure.rows = store.erase(call_ids, subjects, failures_before=before)
    paths = {p for group in found.values() for p in group} | set(_named(folders, names))
    paths |= {Path(r["recording"]) for r in rows if r.get("recording")}
    for path in sorted(paths):
        if path.is_file():
            path.unlink()
            erasure.files.append(path)
    if store is not None:
        for call_id in call_ids:
            audit(store, actor, "erased", "call", call_id, {"why": why})
    return erasure


def _files(folders: list[Path]) -> list[Path]:
    out = []
    for folder in folders:
        if folder.is_dir():
            out += [
                p
                for p in folder.rglob("*")
                if p.is_file() and not p.name.endswith(_DATABASE_SUFFIXES)
            ]
    return out


def _scan(folders: list[Path], matches: Any) -> dict[str, list[Path]]:
    """JSON files (transcripts, spooled records and packets) whose content ``matches``:
    call id -> files."""
    found: dict[str, list[Path]] = {}
    for path in _files(folders):
        if path.suffix not in (".json", ".tmp"):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours, or half written: a name match may still catch it
        if isinstance(data, dict) and data.get("call_id") and matches(data):
            found.setdefault(str(data["call_id"]), []).append(path)
    return found


def _named(folders: list[Path], ids: set[str]) -> list[Path]:
    """Files whose name holds one of ``ids`` (``<call_id>.wav``, ``call-<id>.json``...)."""
    if not ids:
        return []
    return [p for p in _files(folders) if any(i in p.name for i in ids)]


def _where(store: Store | None, folders: list[Path]) -> str:
    from voicebot.store.store import redact as redact_url

    places = [redact_url(store.url)] if store else []
    return ", ".join(places + [str(f) for f in folders]) or "no store and no folder"


class RetentionJob:
    """Runs ``purge`` at start and then every ``interval_s`` (a day) in a thread."""

    def __init__(
        self, store: Store | None, folders: list[Path], interval_s: float = 86400.0
    ) -> None:
        self._store, self._folders, self._interval = store, folders, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voicebot-retention", daemon=True)

    def start(self) -> "RetentionJob":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                erasure = purge(self._store, self._folders)
                if erasure.calls or erasure.files:
                    log.warning("retention purge: %s", erasure.describe())
            except Exception as exc:  # a database hiccup: try again tomorrow
                log.warning("retention purge failed: %s", exc)
            self._stop.wait(self._interval)
