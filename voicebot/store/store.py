"""The call store: calls, turns, handoffs and the webhook outbox in one database.

SQLite file by default, PostgreSQL (or anything SQLAlchemy speaks) by URL. Every method is
one short transaction and is safe to call from several threads; the pipeline calls it from
worker threads only (see ``voicebot.store.sink``).

Claiming is a conditional ``UPDATE ... WHERE status = 'queued'``: the database decides which
of two agents clicking at once gets the call, on SQLite and PostgreSQL alike. Webhook
deliveries are claimed the same way (``claim_delivery``), and so are the live calls of a
dead worker when they are marked ``interrupted`` (``mark_interrupted``, see
``voicebot.store.lease``).

New tables are created on open; a column added to an existing table since (nullable, no
default) is added in place, so an older database keeps working.

Nothing is stored in clear that the redactor can see: records, packets, webhook bodies and
summaries are masked once more on the way in (``voicebot.privacy.redact``). The SQLite file
is the owner's only (0600) and overwrites deleted content (``secure_delete``), so an erased
call leaves no trace in the file.
"""

import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from voicebot.errors import HandoffError, StoreError
from voicebot.privacy.redact import redact_json, redact_text
from voicebot.privacy.storage import create_private, private_dir
from voicebot.store.schema import (
    alert_outbox,
    alerts,
    api_tokens,
    assist_suggestions,
    audit_log,
    calls,
    handoffs,
    live_calls,
    metadata,
    qa_scores,
    sessions,
    turns,
    users,
    verification_failures,
    webhook_outbox,
    workers,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///var/voicebot.db"
DISPOSITIONS = ("resolved", "callback", "escalated", "transferred", "no_answer", "other")


class UnknownHandoffError(HandoffError):
    """No handoff has this id."""


def default_url() -> str:
    """``VOICEBOT_DB_URL`` or the SQLite file ``var/voicebot.db``."""
    return os.environ.get("VOICEBOT_DB_URL") or DEFAULT_URL


def redact(url: str) -> str:
    """The URL for messages and logs: never print a database password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class Store:
    """Open (and create) the store at ``url``; raises ``StoreError`` if it is unusable."""

    def __init__(self, url: str | None = None, *, lock_timeout_s: float = 5.0) -> None:
        self.url = url or default_url()
        self.engine = _engine(self.url, lock_timeout_s)
        try:
            metadata.create_all(self.engine)  # also proves we can write
            _add_missing_columns(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(_explain(self.url, exc)) from exc

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """One round trip to the database (readiness checks); raises when it is down."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # --- calls and turns -----------------------------------------------------------------

    def save_call(
        self,
        record: dict[str, Any],
        changed_turns: list[int] | None = None,
        *,
        worker_id: str | None = None,
    ) -> None:
        """Upsert a call record and its turns (only ``changed_turns`` if given). A live call
        written with a ``worker_id`` is that worker's (``live_calls``) until it ends."""
        record = redact_json(record)
        row = {
            "call_id": record["call_id"],
            "started_at": record["started_at"],
            "caller_id": record.get("caller_id"),
            "pack": record.get("pack"),
            "ended_by": record.get("ended_by"),
            "handoff_reason": record.get("handoff_reason"),
            "duration_s": record.get("duration_s") or 0.0,
            "record": record,
            "updated_at": time.time(),
        }
        indexes = range(len(record["turns"])) if changed_turns is None else changed_turns
        turn_rows = [_turn_row(record["call_id"], i, record["turns"][i]) for i in indexes]
        with self.engine.begin() as conn:
            self._upsert(conn, calls, [row], ["call_id"])
            if turn_rows:
                self._upsert(conn, turns, turn_rows, ["call_id", "idx"])
            if row["ended_by"] is not None:
                conn.execute(delete(live_calls).where(live_calls.c.call_id == row["call_id"]))
            elif worker_id is not None:
                owner = {"call_id": row["call_id"], "worker_id": worker_id}
                self._upsert(conn, live_calls, [owner], ["call_id"])

    def list_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        query = select(calls.c[*_CALL_COLUMNS]).order_by(calls.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(calls.c.record).where(calls.c.call_id == call_id))
            return found.scalar_one_or_none()

    def turn_count(self, call_id: str) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(turns).where(turns.c.call_id == call_id)
            return int(conn.execute(query).scalar_one())

    # --- workers: leases and crash recovery (voicebot.store.lease) --------------------------

    def renew_lease(self, worker_id: str, ttl_s: float, now: float | None = None) -> None:
        """Hold ``worker_id``'s lease ``ttl_s`` more seconds (taken on the first call, for
        this process on this machine: ``this_host()``, ``os.getpid()``)."""
        now = time.time() if now is None else now
        where = workers.c.worker_id == worker_id
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(workers).where(where).values(renewed_at=now, expires_at=now + ttl_s)
            ).rowcount
            if not renewed:
                conn.execute(
                    insert(workers).values(
                        worker_id=worker_id,
                        host=this_host(),
                        pid=os.getpid(),
                        started_at=now,
                        renewed_at=now,
                        expires_at=now + ttl_s,
                    )
                )

    def end_lease(self, worker_id: str) -> None:
        """A worker that stops cleanly gives its lease up (its calls have ended)."""
        with self.engine.begin() as conn:
            conn.execute(delete(workers).where(workers.c.worker_id == worker_id))

    def live_workers(self, now: float | None = None) -> list[dict[str, Any]]:
        """The workers whose lease holds (id, host, pid, started, renewed, expires)."""
        now = time.time() if now is None else now
        query = select(workers).where(workers.c.expires_at > now).order_by(workers.c.started_at)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_interrupted(
        self,
        dead_workers: Sequence[str] | None = None,
        *,
        ownerless: bool = False,
        now: float | None = None,
    ) -> list[str]:
        """Mark ``interrupted`` the live calls of workers whose lease has run out (of those
        in ``dead_workers`` only, if given; a worker whose lease holds is never one), and
        with ``ownerless`` the live calls no worker owns (written before leases existed,
        or by a writer without one). Each gets ``interrupted_at``, the time of its last
        write, and the bot turn it was playing (``speaking``) as its last turn, cut off.
        Returns their ids. Each call is claimed by a conditional UPDATE on its last write's
        time, so two workers recovering at once mark it once, and a call written meanwhile
        (its worker is alive after all) is left alone."""
        now = time.time() if now is None else now
        alive = select(workers.c.worker_id).where(workers.c.expires_at > now)
        dead = select(live_calls.c.call_id).where(live_calls.c.worker_id.not_in(alive))
        if dead_workers is not None:
            dead = dead.where(live_calls.c.worker_id.in_(list(dead_workers)))
        orphaned = calls.c.call_id.in_(dead)
        if ownerless:
            orphaned = or_(orphaned, calls.c.call_id.not_in(select(live_calls.c.call_id)))
        query = select(calls.c.call_id, calls.c.record, calls.c.updated_at).where(
            calls.c.ended_by.is_(None), orphaned
        )
        marked: list[str] = []
        with self.engine.begin() as conn:
            for call_id, record, last_write in conn.execute(query).all():
                record, turn = _interrupted(record, last_write)
                won = conn.execute(
                    update(calls)
                    .where(
                        calls.c.call_id == call_id,
                        calls.c.ended_by.is_(None),
                        calls.c.updated_at == last_write,
                    )
                    .values(ended_by="interrupted", record=record, updated_at=now)
                ).rowcount
                if not won:
                    continue
                if turn is not None:
                    idx = len(record["turns"]) - 1
                    self._upsert(conn, turns, [_turn_row(call_id, idx, turn)], ["call_id", "idx"])
                conn.execute(delete(live_calls).where(live_calls.c.call_id == call_id))
                marked.append(call_id)
            # Leases that ran out an hour ago and own nothing are history.
            conn.execute(
                delete(workers).where(
                    workers.c.expires_at < now - 3600,
                    workers.c.worker_id.not_in(select(live_calls.c.worker_id)),
                )
            )
        return marked

    # --- handoffs ------------------------------------------------------------------------

    def add_handoff(self, packet: dict[str, Any], webhooks: tuple[str, ...] = ()) -> None:
        """Store a handoff and queue its webhook deliveries in one transaction (idempotent:
        the same packet twice, e.g. from a spool flush after a timeout, is stored once)."""
        now = time.time()
        packet = redact_json(packet)
        body = json.dumps(packet, ensure_ascii=False, sort_keys=True)
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(handoffs.c.handoff_id).where(handoffs.c.handoff_id == packet["handoff_id"])
            ).first()
            if exists:
                return
            conn.execute(
                insert(handoffs).values(
                    handoff_id=packet["handoff_id"],
                    call_id=packet["call_id"],
                    caller_id=packet.get("caller_id"),
                    created_at=now,
                    reason=packet["reason"],
                    summary=packet["summary"],
                    summary_source=packet.get("summary_source", "structured"),
                    status="queued",
                    packet=packet,
                    updated_at=now,
                )
            )
            for url in webhooks:
                conn.execute(
                    insert(webhook_outbox).values(
                        handoff_id=packet["handoff_id"],
                        url=url,
                        body=body,
                        attempts=0,
                        next_attempt_at=now,
                        dead=False,
                    )
                )

    def list_handoffs(
        self, status: str | None = None, *, since: float | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first; ``since`` (an ``updated_at``) returns only what changed after it."""
        query = select(handoffs).order_by(handoffs.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(handoffs.c.status == status)
        if since is not None:
            query = query.where(handoffs.c.updated_at > since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_handoff(self, handoff_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(handoffs).where(handoffs.c.handoff_id == handoff_id)).first()
        if row is None:
            raise UnknownHandoffError(f"no handoff {handoff_id!r}")
        return dict(row._mapping)

    def claim(self, handoff_id: str, agent: str) -> dict[str, Any]:
        """Give the handoff to ``agent``; ``HandoffError`` if someone else has it."""
        agent = agent.strip()
        if not agent:
            raise HandoffError("an agent name is needed to claim a handoff")
        now = time.time()
        with self.engine.begin() as conn:
            won = conn.execute(
                update(handoffs)
                .where(handoffs.c.handoff_id == handoff_id, handoffs.c.status == "queued")
                .values(status="claimed", agent=agent, claimed_at=now, updated_at=now)
            ).rowcount
        current = self.get_handoff(handoff_id)
        if not won and current["disposition"] == "abandoned":
            raise HandoffError(f"the caller left the queue: handoff {handoff_id} is closed")
        if not won and current["agent"] != agent:
            raise HandoffError(
                f"handoff {handoff_id} is already {current['status']} by {current['agent']}"
            )
        return current

    def close_handoff(self, handoff_id: str, agent: str, disposition: str) -> dict[str, Any]:
        """Close a handoff the agent holds, with how it ended (one of ``DISPOSITIONS``)."""
        if disposition not in DISPOSITIONS:
            raise HandoffError(
                f"unknown disposition {disposition!r} (one of: {', '.join(DISPOSITIONS)})"
            )
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(handoffs)
                .where(
                    handoffs.c.handoff_id == handoff_id,
                    handoffs.c.status == "claimed",
                    handoffs.c.agent == agent,
                )
                .values(status="closed", disposition=disposition, closed_at=now, updated_at=now)
            ).rowcount
        current = self.get_handoff(handoff_id)
        if not done:
            raise HandoffError(
                f"handoff {handoff_id} is {current['status']}"
                + (f" by {current['agent']}" if current["agent"] else "")
                + "; only the agent who claimed it can close it"
            )
        return current

    def record_transfer(self, handoff_id: str, transfer: dict[str, Any]) -> None:
        """Keep how the call was sent on (``transfer["outcome"]``) in the packet. Transferred:
        the handoff is closed with disposition ``transferred``, since the desk that answered
        has the call; otherwise it stays queued here for an agent to call back."""
        now = time.time()
        where = handoffs.c.handoff_id == handoff_id
        with self.engine.begin() as conn:
            row = conn.execute(select(handoffs.c.packet).where(where)).scalar_one_or_none()
            if row is None:
                raise UnknownHandoffError(f"no handoff {handoff_id!r}")
            packet = dict(row) | {"transfer": transfer}
            conn.execute(update(handoffs).where(where).values(packet=packet, updated_at=now))
            if transfer.get("outcome") == "transferred":  # unless an agent took it meanwhile
                conn.execute(
                    update(handoffs)
                    .where(where, handoffs.c.status == "queued")
                    .values(status="closed", disposition="transferred", closed_at=now)
                )

    def set_queue(
        self, handoff_id: str, queue: dict[str, Any], requeue_from: str | None = None
    ) -> None:
        """Keep how the caller's wait is going (``voicebot.handoff.bridge``) in the packet.
        ``abandoned``: the caller hung up, so the handoff is closed and nobody can claim
        it; ``requeue_from``: that agent's softphone dropped, the handoff is queued again."""
        now = time.time()
        where = handoffs.c.handoff_id == handoff_id
        with self.engine.begin() as conn:
            row = conn.execute(select(handoffs.c.packet).where(where)).scalar_one_or_none()
            if row is None:
                raise UnknownHandoffError(f"no handoff {handoff_id!r}")
            packet = dict(row) | {"queue": redact_json(queue)}
            values: dict[str, Any] = {"packet": packet, "updated_at": now}
            conn.execute(update(handoffs).where(where).values(**values))
            if queue.get("state") == "abandoned":
                conn.execute(
                    update(handoffs)
                    .where(where, handoffs.c.status != "closed")
                    .values(status="closed", disposition="abandoned", closed_at=now)
                )
            if requeue_from is not None:
                conn.execute(
                    update(handoffs)
                    .where(where, handoffs.c.status == "claimed", handoffs.c.agent == requeue_from)
                    .values(status="queued", agent=None, claimed_at=None)
                )

    def queue_position(self, handoff_id: str) -> int:
        """1 for the oldest queued handoff, and so on (a handoff not queued counts as 1)."""
        with self.engine.connect() as conn:
            mine = conn.execute(
                select(handoffs.c.created_at).where(handoffs.c.handoff_id == handoff_id)
            ).scalar_one_or_none()
            if mine is None:
                raise UnknownHandoffError(f"no handoff {handoff_id!r}")
            ahead = conn.execute(
                select(func.count())
                .select_from(handoffs)
                .where(handoffs.c.status == "queued", handoffs.c.created_at < mine)
            ).scalar_one()
        return int(ahead) + 1

    # --- agent assist --------------------------------------------------------------------

    def add_suggestions(self, handoff_id: str, suggestions: list[dict[str, Any]]) -> None:
        """Keep what the assistant suggested (masked once more); one id is stored once."""
        now = time.time()
        rows = [
            redact_json({k: s[k] for k in ("suggestion_id", "turn", "kind", "title", "text")})
            | {"data": redact_json(s["data"]), "handoff_id": handoff_id}
            | {"created_at": now, "updated_at": now}
            for s in suggestions
        ]
        if rows:
            with self.engine.begin() as conn:
                self._upsert(conn, assist_suggestions, rows, ["handoff_id", "suggestion_id"])

    def suggestions(self, handoff_id: str, since: float | None = None) -> list[dict[str, Any]]:
        """A handoff's suggestions in the order they were made (``since``: changed after)."""
        query = (
            select(assist_suggestions)
            .where(assist_suggestions.c.handoff_id == handoff_id)
            .order_by(assist_suggestions.c.turn, assist_suggestions.c.created_at)
        )
        if since is not None:
            query = query.where(assist_suggestions.c.updated_at > since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_suggestion(
        self, handoff_id: str, suggestion_id: str, used: bool, agent: str
    ) -> dict[str, Any]:
        """Record whether ``agent`` used a suggestion; ``HandoffError`` if there is none."""
        now = time.time()
        where = (
            assist_suggestions.c.handoff_id == handoff_id,
            assist_suggestions.c.suggestion_id == suggestion_id,
        )
        with self.engine.begin() as conn:
            done = conn.execute(
                update(assist_suggestions)
                .where(*where)
                .values(used=used, used_by=agent, used_at=now, updated_at=now)
            ).rowcount
            row = conn.execute(select(assist_suggestions).where(*where)).first()
        if not done or row is None:
            raise HandoffError(f"handoff {handoff_id} has no suggestion {suggestion_id!r}")
        return dict(row._mapping)

    def set_summary(self, handoff_id: str, summary: str, source: str) -> None:
        """Replace the summary (e.g. with the LLM's, once ready); the card updates live."""
        summary = redact_text(summary)
        with self.engine.begin() as conn:
            row = conn.execute(
                select(handoffs.c.packet).where(handoffs.c.handoff_id == handoff_id)
            ).scalar_one()
            packet = dict(row) | {"summary": summary, "summary_source": source}
            conn.execute(
                update(handoffs)
                .where(handoffs.c.handoff_id == handoff_id)
                .values(
                    summary=summary, summary_source=source, packet=packet, updated_at=time.time()
                )
            )

    # --- webhook outbox ------------------------------------------------------------------

    # ``outbox``: the handoffs' (``webhook_outbox``) or the alerts' (``alert_outbox``).

    def due_deliveries(
        self,
        now: float,
        limit: int = 20,
        *,
        due_or_not: bool = False,
        outbox: Table = webhook_outbox,
    ) -> list[dict[str, Any]]:
        """Deliveries to attempt: not delivered, not given up, not claimed by an attempt in
        progress, and due by ``now`` (``due_or_not``: also those waiting for a retry)."""
        query = (
            select(outbox)
            .where(
                outbox.c.delivered_at.is_(None),
                outbox.c.dead.is_(False),
                _unclaimed(outbox, now),
            )
            .order_by(outbox.c.next_attempt_at)
            .limit(limit)
        )
        if not due_or_not:
            query = query.where(outbox.c.next_attempt_at <= now)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def claim_delivery(
        self, delivery_id: int, now: float, hold_s: float, *, outbox: Table = webhook_outbox
    ) -> dict[str, Any] | None:
        """Claim a delivery for an attempt of at most ``hold_s``: the row as it is now (its
        attempts so far), or None if it is delivered, given up, or claimed by someone
        else. A conditional UPDATE, so of two processes claiming at once exactly one gets
        it; the claim ends with ``delivery_done`` or ``delivery_failed``, or runs out (the
        process died mid-attempt: it is retried)."""
        with self.engine.begin() as conn:
            won = conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == delivery_id,
                    outbox.c.delivered_at.is_(None),
                    outbox.c.dead.is_(False),
                    _unclaimed(outbox, now),
                )
                .values(claimed_until=now + hold_s)
            ).rowcount
            if not won:
                return None
            row = conn.execute(select(outbox).where(outbox.c.id == delivery_id))
            return dict(row.one()._mapping)

    def deliveries(self, handoff_id: str) -> list[dict[str, Any]]:
        query = select(webhook_outbox).where(webhook_outbox.c.handoff_id == handoff_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def delivery_done(
        self, delivery_id: int, attempts: int, *, outbox: Table = webhook_outbox
    ) -> None:
        self._update_delivery(
            outbox, delivery_id, attempts=attempts, delivered_at=time.time(), claimed_until=None
        )

    def delivery_failed(
        self,
        delivery_id: int,
        attempts: int,
        error: str,
        retry_at: float | None,
        *,
        outbox: Table = webhook_outbox,
    ) -> None:
        """Record a failed attempt; ``retry_at=None`` gives up (kept, marked dead)."""
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_error": error[:2000],
            "claimed_until": None,
        }
        values |= {"dead": True} if retry_at is None else {"next_attempt_at": retry_at}
        self._update_delivery(outbox, delivery_id, **values)

    def revive_dead_deliveries(self, now: float) -> int:
        """Deliveries that gave up are due again (an operator fixed the receiver): returns
        how many. Their attempt counts stay, so ``handoffs show`` tells the whole story."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(webhook_outbox)
                .where(webhook_outbox.c.dead.is_(True), webhook_outbox.c.delivered_at.is_(None))
                .values(dead=False, next_attempt_at=now)
            )
        return int(result.rowcount)

    def _update_delivery(self, outbox: Table, delivery_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == delivery_id).values(**values))

    # --- privacy: lockout, erasure, retention --------------------------------------------

    def add_failure(self, subjects: list[str], at: float) -> None:
        """Note a failed verification for each subject (hashed ids, see schema)."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(verification_failures), [{"subject": s, "at": at} for s in subjects]
            )

    def failures_since(self, subjects: list[str], since: float) -> int:
        """The most failures any of ``subjects`` had since ``since``."""
        query = (
            select(func.count())
            .select_from(verification_failures)
            .where(verification_failures.c.at >= since)
            .group_by(verification_failures.c.subject)
            .where(verification_failures.c.subject.in_(subjects))
        )
        with self.engine.connect() as conn:
            return max((int(n) for n in conn.execute(query).scalars()), default=0)

    def calls_from(self, caller_ids: list[str]) -> list[dict[str, Any]]:
        """Calls (id, caller, pack, start, recording) from any of ``caller_ids``."""
        return self._call_rows(calls.c.caller_id.in_(caller_ids))

    def calls_started_before(self, started_at: str) -> list[dict[str, Any]]:
        return self._call_rows(calls.c.started_at < started_at)

    def call_rows(self, call_ids: list[str]) -> list[dict[str, Any]]:
        return self._call_rows(calls.c.call_id.in_(call_ids))

    def _call_rows(self, condition: Any) -> list[dict[str, Any]]:
        query = select(
            calls.c.call_id, calls.c.caller_id, calls.c.pack, calls.c.started_at, calls.c.record
        ).where(condition)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["recording"] = (row.pop("record") or {}).get("recording")
        return rows

    def handoff_ids(self, call_ids: list[str]) -> list[str]:
        query = select(handoffs.c.handoff_id).where(handoffs.c.call_id.in_(call_ids))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def erase(
        self, call_ids: list[str], subjects: list[str] = (), *, failures_before: float | None = None
    ) -> dict[str, int]:
        """Delete every row of these calls in every table (turns, handoffs, webhook bodies,
        anything later tables key on a call or handoff id), and the lockout rows of
        ``subjects``; then make the deletion physical. Returns rows deleted per table."""
        handoff_ids = self.handoff_ids(call_ids) if call_ids else []
        keys = {"call_id": call_ids, "handoff_id": handoff_ids, "subject": list(subjects)}
        deleted: dict[str, int] = {}
        with self.engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):  # children before parents
                if table.name in APPEND_ONLY_TABLES:
                    continue
                matches = [table.c[k].in_(v) for k, v in keys.items() if k in table.c and v]
                if table is verification_failures and failures_before is not None:
                    matches.append(table.c.at < failures_before)
                if matches:
                    count = conn.execute(delete(table).where(or_(*matches))).rowcount
                    if count:
                        deleted[table.name] = int(count)
        self._compact()
        return deleted

    def _compact(self) -> None:
        """SQLite: move the (zeroed) pages out of the write-ahead log and empty it."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- QA scorecards (voicebot.qa) --------------------------------------------------------

    def save_scorecard(self, card: dict[str, Any]) -> None:
        """Store a call's scorecard (``voicebot.qa.Scorecard.to_dict()``), replacing an
        earlier one of the same call (a re-run of ``voicebot qa run``)."""
        scores = {p["part"]: p["score"] for p in card["parts"]}
        row = {
            "call_id": card["call_id"],
            "pack": card["pack"],
            "form": card["form"],
            "started_at": card["started_at"],
            "scored_at": card["scored_at"],
            "bot_score": scores.get("bot"),
            "agent_score": scores.get("agent"),
            "passed": card["passed"],
            "failed": card["failed"],
            "scorecard": card,
        }
        with self.engine.begin() as conn:
            self._upsert(conn, qa_scores, [row], ["call_id"])

    def get_scorecard(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            query = select(qa_scores.c.scorecard).where(qa_scores.c.call_id == call_id)
            return conn.execute(query).scalar_one_or_none()

    def list_scorecards(
        self, since: str | None = None, until: str | None = None, pack: str | None = None
    ) -> list[dict[str, Any]]:
        """Scorecards of the calls started in [since, until), oldest first."""
        query = _in_range(select(qa_scores.c.scorecard), qa_scores, since, until, pack)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(qa_scores.c.started_at)).scalars())

    def calls_between(
        self, since: str | None = None, until: str | None = None, pack: str | None = None
    ) -> list[dict[str, Any]]:
        """Records of the finished calls started in [since, until) (ISO times), oldest
        first: what QA runs and KPI reports read."""
        query = _in_range(select(calls.c.record), calls, since, until, pack)
        query = query.where(calls.c.ended_by.is_not(None)).order_by(calls.c.started_at)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def handoffs_of(self, call_ids: list[str]) -> list[dict[str, Any]]:
        """The handoff rows of these calls (queue state, claim and close times)."""
        if not call_ids:
            return []
        columns = [c for c in handoffs.c if c.name != "packet"]
        with self.engine.connect() as conn:
            query = select(*columns).where(handoffs.c.call_id.in_(call_ids))
            return [dict(r._mapping) for r in conn.execute(query)]

    def list_qa(
        self,
        since: str | None = None,
        until: str | None = None,
        pack: str | None = None,
        *,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The scored calls started in [since, until), newest first: their figures, not
        the scorecards (``get_scorecard`` has those)."""
        columns = [c for c in qa_scores.c if c.name != "scorecard"]
        query = _in_range(select(*columns), qa_scores, since, until, pack)
        query = query.order_by(qa_scores.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- the supervisor's board and alerts (voicebot.server.supervisor, voicebot.qa.alerts) --

    def calls_changed(self, since: float | None = None) -> list[dict[str, Any]]:
        """``call_id``, ``ended_by``, ``updated_at`` and ``record`` of the calls written
        after ``since`` (an ``updated_at``), on any worker; without it, the calls still in
        progress. The board reads the first once, then follows with the second."""
        query = select(calls.c.call_id, calls.c.ended_by, calls.c.updated_at, calls.c.record)
        if since is None:
            query = query.where(calls.c.ended_by.is_(None))
        else:
            query = query.where(calls.c.updated_at > since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(calls.c.updated_at))]

    def add_alert(self, alert: dict[str, Any], webhooks: tuple[str, ...] = ()) -> bool:
        """Store an alert and queue its webhook deliveries in one transaction; False (and
        nothing written) when an alert of that ``alert_id`` exists, e.g. raised by another
        worker a moment before: the database settles it."""
        alert = redact_json(alert)
        body = json.dumps({"event": "alert", **alert}, ensure_ascii=False, sort_keys=True)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(alerts).values(**alert))
                for url in webhooks:
                    conn.execute(
                        insert(alert_outbox).values(
                            alert_id=alert["alert_id"],
                            call_id=alert.get("call_id"),
                            url=url,
                            body=body,
                            attempts=0,
                            next_attempt_at=time.time(),
                            dead=False,
                        )
                    )
        except IntegrityError:
            return False
        return True

    def list_alerts(self, since: float | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Alerts raised after ``since`` (epoch seconds), newest first."""
        query = select(alerts).order_by(alerts.c.created_at.desc()).limit(limit)
        if since is not None:
            query = query.where(alerts.c.created_at > since)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- sign-in and audit (voicebot.auth owns the rules; these are its rows) ----------------

    def add_user(self, name: str, role: str, password_hash: str) -> None:
        now = time.time()
        row = {"name": name, "role": role, "password_hash": password_hash, "disabled": False}
        with self.engine.begin() as conn:
            conn.execute(insert(users).values(**row, created_at=now, updated_at=now))

    def get_user(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        return dict(row._mapping) if row else None

    def list_users(self) -> list[dict[str, Any]]:
        query = select(users.c.name, users.c.role, users.c.disabled, users.c.created_at)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(users.c.name))]

    def update_user(self, name: str, **values: Any) -> bool:
        """Change a user (``password_hash``, ``role``, ``disabled``) and end their sessions,
        in one transaction: a new password or a disabled account signs them out everywhere."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(users).where(users.c.name == name).values(**values, updated_at=time.time())
            ).rowcount
            conn.execute(delete(sessions).where(sessions.c.user_name == name))
        return bool(done)

    def add_token(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(api_tokens).values(**row))

    def get_token(self, token_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).first()
        return dict(row._mapping) if row else None

    def list_tokens(self) -> list[dict[str, Any]]:
        query = select(api_tokens).order_by(api_tokens.c.created_at)
        with self.engine.connect() as conn:
            return [
                {k: v for k, v in r._mapping.items() if k != "secret_hash"}
                for r in conn.execute(query)
            ]

    def revoke_tokens(self, token_id_or_name: str, now: float) -> int:
        """Revoke the token with this id, or every live token with this name: how many."""
        key = token_id_or_name
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(
                    or_(api_tokens.c.token_id == key, api_tokens.c.name == key),
                    api_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
        return int(result.rowcount)

    def count_principals(self, now: float) -> int:
        """Enabled users plus live tokens: zero means nobody can sign in."""
        live = or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now)
        with self.engine.connect() as conn:
            people = conn.execute(
                select(func.count()).select_from(users).where(users.c.disabled.is_(False))
            ).scalar_one()
            machines = conn.execute(
                select(func.count())
                .select_from(api_tokens)
                .where(api_tokens.c.revoked_at.is_(None), live)
            ).scalar_one()
        return int(people) + int(machines)

    def add_session(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at <= row["created_at"]))
            conn.execute(insert(sessions).values(**row))

    def get_session(self, session_hash: str) -> dict[str, Any] | None:
        """The session joined with its user's role and state (None: no such session)."""
        query = (
            select(sessions, users.c.role, users.c.disabled)
            .join(users, users.c.name == sessions.c.user_name)
            .where(sessions.c.session_hash == session_hash)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def touch_session(self, session_hash: str, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(sessions)
                .where(sessions.c.session_hash == session_hash)
                .values(last_seen_at=now)
            )

    def delete_session(self, session_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.session_hash == session_hash))

    def add_audit(self, row: dict[str, Any]) -> None:
        """Append one audit entry (there is no method to change or remove one)."""
        with self.engine.begin() as conn:
            conn.execute(insert(audit_log).values(**row))

    def list_audit(
        self, *, since: float | None = None, call_id: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, oldest first (a listing reads in order)."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if call_id is not None:
            query = query.where(audit_log.c.call_id == call_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)][::-1]

    def has_handoff(self, call_id: str) -> bool:
        """Whether the call was handed to the agents (who may then open it)."""
        query = select(handoffs.c.handoff_id).where(handoffs.c.call_id == call_id).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    # --- helpers -------------------------------------------------------------------------

    def _upsert(self, conn: Any, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
        dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(self.engine.dialect.name)
        if dialect is None:  # other databases: delete + insert, still one transaction
            for row in rows:
                conn.execute(table.delete().where(*(table.c[k] == row[k] for k in keys)))
            conn.execute(insert(table), rows)
            return
        statement = dialect.insert(table)
        changed = {c: statement.excluded[c] for c in rows[0] if c not in keys}
        conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed), rows)


# Tables erasure leaves alone: the audit log keeps who did what (it holds no caller data).
APPEND_ONLY_TABLES = frozenset({"audit_log"})

_CALL_COLUMNS = (
    "call_id",
    "started_at",
    "caller_id",
    "pack",
    "ended_by",
    "handoff_reason",
    "duration_s",
)


def _in_range(
    query: Any, table: Any, since: str | None, until: str | None, pack: str | None
) -> Any:
    if since is not None:
        query = query.where(table.c.started_at >= since)
    if until is not None:
        query = query.where(table.c.started_at < until)
    if pack is not None:
        query = query.where(table.c.pack == pack)
    return query


def this_host() -> str:
    """This machine, as worker leases name it: its host name and boot (a reboot is another
    machine: no process of the last boot runs)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()[:200]}/{boot}"


def _unclaimed(outbox: Table, now: float) -> Any:
    claimed = outbox.c.claimed_until
    return or_(claimed.is_(None), claimed < now)


def _interrupted(
    record: dict[str, Any], last_write: float
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The record of a call whose process died: ended ``interrupted`` at its last write,
    with the bot turn that was playing (as far as it was heard) as its last turn."""
    record = dict(record)
    record["ended_by"] = "interrupted"
    record["interrupted_at"] = datetime.fromtimestamp(last_write, UTC).isoformat()
    speaking = record.pop("speaking", None)
    record["speaking"] = None
    turn = None
    if speaking:
        turn = dict(speaking) | {"interrupted": True}
        record["turns"] = [*record.get("turns", []), turn]
        summary = record.get("summary")
        if isinstance(summary, dict):
            record["summary"] = summary | {"bot_turns": summary.get("bot_turns", 0) + 1}
    return record, turn


def _add_missing_columns(engine: Engine) -> None:
    """Add the columns of ``metadata`` an existing table lacks (``create_all`` creates only
    missing tables). Such columns are nullable with no default: adding one is instant and
    older rows read as NULL. Another process adding it at the same moment is fine."""
    tables = {t.name: t for t in metadata.sorted_tables}
    inspector = inspect(engine)
    quote = engine.dialect.identifier_preparer.quote
    for name in inspector.get_table_names():
        if name not in tables:
            continue
        have = {c["name"] for c in inspector.get_columns(name)}
        for column in tables[name].columns:
            if column.name in have:
                continue
            assert column.nullable and column.server_default is None, column
            kind = column.type.compile(engine.dialect)
            statement = f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column.name)} {kind}"
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(statement)
            except SQLAlchemyError:
                fresh = {c["name"] for c in inspect(engine).get_columns(name)}
                if column.name not in fresh:
                    raise
            log.warning("store: added column %s.%s", name, column.name)


def _turn_row(call_id: str, idx: int, turn: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "idx": idx,
        "role": turn["role"],
        "text": turn["text"],
        "start": turn.get("start"),
        "end": turn.get("end"),
        "intent": turn.get("intent"),
        "confidence": turn.get("confidence"),
        "data": turn,
    }


def _engine(url: str, lock_timeout_s: float) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r} (e.g. {DEFAULT_URL})") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            try:
                create_private(private_dir(folder) / Path(parsed.database).name)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder {folder} for the store {url}: {exc.strerror}"
                ) from exc
        engine = create_engine(url, connect_args={"timeout": lock_timeout_s})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten
            cursor.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    try:
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, round(lock_timeout_s))},
        )
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database {redact(url)}: {exc}") from exc


def _explain(url: str, exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    hint = ""
    if "locked" in text:
        hint = " (another process holds a write lock; stop it or use PostgreSQL)"
    elif "unable to open" in text:
        hint = " (check that the directory exists and is writable)"
    elif "connect" in text.lower() or "refused" in text.lower():
        hint = " (is the server running, and are host, port and credentials right?)"
    return f"cannot open the store at {redact(url)}: {text}{hint}"
