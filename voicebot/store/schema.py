"""Tables of the call store (SQLAlchemy Core; the same schema on SQLite and PostgreSQL).

The full call record and handoff packet are kept as JSON next to the columns people filter
and sort on, so nothing said is lost to the schema and reports can evolve without migrations.
Times that order changes (``updated_at``) are epoch seconds: the agent desktop polls them.
"""

from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
)

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("started_at", String(40), nullable=False),
    Column("caller_id", String(64)),
    Column("pack", String(64)),
    Column("ended_by", String(16)),
    Column("handoff_reason", String(32)),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("record", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)
# The supervisor's live board follows changed calls (``voicebot.server.supervisor``).
Index("ix_calls_updated", calls.c.updated_at)

turns = Table(
    "turns",
    metadata,
    Column("call_id", String(64), ForeignKey("calls.call_id"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("role", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Column("start", Float),
    Column("end", Float),
    Column("intent", String(64)),
    Column("confidence", Float),
    Column("data", JSON, nullable=False),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("handoff_id", String(64), primary_key=True),
    Column("call_id", String(64), nullable=False, index=True),
    Column("caller_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("summary_source", String(16), nullable=False),
    Column("status", String(16), nullable=False, default="queued"),  # queued|claimed|closed
    Column("agent", String(128)),
    Column("claimed_at", Float),
    Column("closed_at", Float),
    Column("disposition", String(64)),
    Column("packet", JSON, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
)

# Agent assist: what was suggested to the agent during the human part of a call, tied to
# the transcript turn that produced it, and whether the agent used it (None: not said yet).
assist_suggestions = Table(
    "assist_suggestions",
    metadata,
    Column("handoff_id", String(64), ForeignKey("handoffs.handoff_id"), primary_key=True),
    Column("suggestion_id", String(64), primary_key=True),
    Column("turn", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("used", Boolean),
    Column("used_by", String(128)),
    Column("used_at", Float),
    Column("updated_at", Float, nullable=False, index=True),
)

# Transactional outbox: a webhook delivery is written in the same transaction as its
# handoff, so a receiver that is down (or a crash) never loses a packet.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("handoff_id", String(64), ForeignKey("handoffs.handoff_id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("dead", Boolean, nullable=False, default=False),
    Column("last_error", Text),
    # A delivery being attempted is claimed until then (``Store.claim_delivery``): two
    # processes delivering at once (a server's loop, ``handoffs deliver --now``) never
    # both POST it; a process that dies mid-attempt lets it go when the claim runs out.
    Column("claimed_until", Float),
)
Index("ix_outbox_due", webhook_outbox.c.delivered_at, webhook_outbox.c.next_attempt_at)

# --- workers and the calls they are running (voicebot.store.lease) -------------------------
# Each process that records calls holds a lease here, renewed every few seconds; each live
# call is owned by its worker until it ends. A call whose worker's lease ran out is marked
# ``interrupted`` by the next worker that looks (its process died mid-call).
workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("renewed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)

live_calls = Table(
    "live_calls",
    metadata,
    Column("call_id", String(64), ForeignKey("calls.call_id"), primary_key=True),
    Column("worker_id", String(64), nullable=False, index=True),
)

# Failed verifications, for the per-caller lockout (``voicebot.privacy.lockout``). The
# subject is a hash of the caller ID (or customer): no phone number is kept here.
verification_failures = Table(
    "verification_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(64), nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),
)

# --- QA scorecards (voicebot.qa) ---------------------------------------------------------
# One row per scored call: the scorecard as JSON, with the figures reports filter and
# aggregate on beside it. ``started_at`` is the call's, so a date range selects both.
qa_scores = Table(
    "qa_scores",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("pack", String(64)),
    Column("form", String(64), nullable=False),
    Column("started_at", String(40), nullable=False, index=True),
    Column("scored_at", String(40), nullable=False),
    Column("bot_score", Float),
    Column("agent_score", Float),
    Column("passed", Boolean),
    Column("failed", JSON, nullable=False),  # ["bot:greeting", ...]
    Column("scorecard", JSON, nullable=False),
)
# --- supervisor alerts (voicebot.qa.alerts) ----------------------------------------------
# One row per alert (``alert_id`` names what it is about, so every worker that sees the same
# angry turn or long wait raises it once), and its webhook deliveries: the same outbox
# pattern as handoffs, written in the alert's transaction.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(128), primary_key=True),  # e.g. "angry_caller:<call_id>"
    Column("kind", String(32), nullable=False),
    Column("call_id", String(64), index=True),
    Column("handoff_id", String(64)),
    Column("pack", String(64)),
    Column("created_at", Float, nullable=False, index=True),
    Column("message", Text, nullable=False),
    Column("detail", JSON, nullable=False),
)
alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(128), ForeignKey("alerts.alert_id"), nullable=False),
    Column("call_id", String(64), index=True),  # erasure finds a call's deliveries by it
    # the delivery state, column for column as handoffs' (copies: a column has one table)
    *(c._copy() for c in webhook_outbox.c if c.name not in ("id", "handoff_id")),
)
Index("ix_alert_outbox_due", alert_outbox.c.delivered_at, alert_outbox.c.next_attempt_at)

# --- sign-in and audit (voicebot.auth) --------------------------------------------------
# Users, machine tokens and desktop sessions; secrets are stored only as hashes (argon2 for
# passwords; SHA-256 for tokens and session ids, which are random and long). The audit log
# is append-only: the store has no method that changes or deletes a row, and the database
# refuses UPDATE and DELETE on it (triggers below).

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # agent | supervisor | admin
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),  # public half: vb_<token_id>_<secret>
    Column("name", String(64), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),  # None: never
    Column("revoked_at", Float),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target_kind", String(16), nullable=False),
    Column("target_id", String(128), nullable=False),
    Column("call_id", String(64), index=True),
    Column("detail", JSON, nullable=False),
)

_APPEND_ONLY = "the audit log is append-only"
for _verb in ("UPDATE", "DELETE"):
    event.listen(
        audit_log,
        "after_create",
        DDL(
            f"CREATE TRIGGER audit_log_no_{_verb.lower()} BEFORE {_verb} ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        ).execute_if(dialect="sqlite"),
    )
for _statement in (
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
):
    event.listen(audit_log, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
