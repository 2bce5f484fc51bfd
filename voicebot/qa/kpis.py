"""Contact-center KPIs from the call store: per day, pack and intent, and live on /metrics.

Every figure comes from the stored call records, their handoff rows (the agent desktop's
claim and close times) and their QA scorecards:

- **calls**; **containment**: the share of calls that ended without a handoff (the bot
  served the caller);
- **handoff rate by reason** (``caller_request``, ``low_confidence``, ...);
- **handle time**: the bot's part (call start to the handoff, or the whole call) and the
  human part (the agent's turns in a live transfer, else claim to close on the desktop);
- **queue wait** (handoff to the agent's first word, else to the claim) and **abandonment**
  (the caller hung up before a person took the call: a handed-off call that ended with the
  caller and no agent turn, or a desktop handoff closed ``no_answer``), where measured;
- **first-call resolution**: the share of calls whose caller (by caller ID) did not call
  again about the same intent within ``fcr_days`` (7); calls less than that old count as
  resolved until a repeat comes;
- **CSAT**: the mean post-call survey score (1-5) and how many answered;
- **sentiment**: the caller's mean valence at the start and at the end of calls;
- **top failure reasons**: handoff reasons, calls ended by an error or the time limit, and
  the QA criteria failed, most frequent first.

A call's intent is the first request the caller made (not a yes/no, a goodbye or an
out-of-scope turn); calls without one are grouped as ``none``.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter as MetricCounter
from prometheus_client import Histogram

from voicebot.errors import NoCallsError
from voicebot.events import HANDOFF_REASONS
from voicebot.pipeline.record import SERVER_ENDINGS
from voicebot.qa.criteria import mean_valence, sentiment_ends, split_parts
from voicebot.qa.scorecard import Scorecard
from voicebot.store.store import Store

FCR_DAYS = 7
NO_INTENT = "none"
_NOT_REQUESTS = {"affirm", "deny", "goodbye", "out_of_scope"}
_TOP_FAILURES = 5


@dataclass(frozen=True)
class CallFacts:
    """What one call contributes to the KPIs."""

    call_id: str
    started_at: datetime
    pack: str
    intent: str
    caller_id: str | None
    contained: bool
    handoff_reason: str | None
    bot_handle_s: float
    human_handle_s: float | None = None
    queue_wait_s: float | None = None
    abandoned: bool | None = None  # None: not measured for this call
    csat: int | None = None
    sentiment_start: float | None = None
    sentiment_end: float | None = None
    qa_score: float | None = None
    failures: tuple[str, ...] = ()

    @property
    def day(self) -> str:
        return self.started_at.date().isoformat()


def call_facts(
    record: dict[str, Any],
    handoff: dict[str, Any] | None = None,
    scorecard: dict[str, Any] | None = None,
) -> CallFacts:
    """The KPI facts of one stored call (its record, handoff row and scorecard)."""
    parts = split_parts(record)
    bot, agent = parts[0], parts[1] if len(parts) > 1 else None
    reason = record.get("handoff_reason") or (record.get("handoff") or {}).get("reason")
    handed_off = reason is not None or agent is not None
    duration = float(record.get("duration_s") or 0.0)
    bot_end = max((line.end for line in bot.lines), default=duration) if agent else duration
    human = queue = None
    abandoned: bool | None = None
    if agent is not None:
        human = max(line.end for line in agent.lines) - agent.lines[0].start
        queue = max(0.0, agent.lines[0].start - bot_end)
        abandoned = False
    elif handoff is not None:
        if handoff.get("claimed_at") is not None:
            queue = handoff["claimed_at"] - handoff["created_at"]
            abandoned = False
        if handoff.get("closed_at") is not None and handoff.get("claimed_at") is not None:
            human = handoff["closed_at"] - handoff["claimed_at"]
        if handoff.get("disposition") == "no_answer":
            abandoned = True
    if handed_off and agent is None and record.get("ended_by") == "caller":
        abandoned = True  # hung up on the transfer or in the queue
    ends = sentiment_ends([*bot.lines, *(agent.lines if agent else ())], window=2)
    card = Scorecard.from_dict(scorecard) if scorecard else None
    failures = [f"handoff:{reason}"] if reason else []
    if record.get("ended_by") in SERVER_ENDINGS | {"timeout"}:
        failures.append(f"ended:{record['ended_by']}")
    failures += [f"qa:{name}" for name in (card.failed if card else ())]
    survey = record.get("survey") or {}
    return CallFacts(
        call_id=record["call_id"],
        started_at=_parse_time(record["started_at"]),
        pack=record.get("pack") or "",
        intent=call_intent(record),
        caller_id=record.get("caller_id"),
        contained=not handed_off,
        handoff_reason=reason if reason else ("transfer" if agent else None),
        bot_handle_s=round(bot_end, 2),
        human_handle_s=round(human, 2) if human is not None else None,
        queue_wait_s=round(queue, 2) if queue is not None else None,
        abandoned=abandoned,
        csat=survey.get("score"),
        sentiment_start=mean_valence(ends[0]) if ends else None,
        sentiment_end=mean_valence(ends[1]) if ends else None,
        qa_score=_overall(card),
        failures=tuple(failures),
    )


def call_intent(record: dict[str, Any]) -> str:
    """The first request the caller made (``none`` without one): what the call is about."""
    for turn in record.get("turns") or []:
        if turn.get("role") != "caller" or turn.get("dropped"):
            continue
        if ((turn.get("policy") or {}).get("signals") or {}).get("answering"):
            continue  # an answer to the bot's question ("4 5 6 7") is not a request
        if turn.get("intent") and turn["intent"] not in _NOT_REQUESTS:
            return str(turn["intent"])
    return NO_INTENT


def _overall(card: Scorecard | None) -> float | None:
    """A call's QA score: the mean of its scored parts."""
    scores = [p.score for p in card.parts if p.score is not None] if card else []
    return round(sum(scores) / len(scores), 1) if scores else None


@dataclass(frozen=True)
class KpiRow:
    """The KPIs of a group of calls (``None`` in day/pack/intent: all of them)."""

    day: str | None
    pack: str | None
    intent: str | None
    calls: int
    contained: int
    containment: float
    handoffs: dict[str, int]
    handoff_rate: dict[str, float]
    bot_handle_s: float
    human_handle_s: float | None
    queue_wait_s: float | None
    abandoned: int | None
    abandonment: float | None
    fcr: float | None
    fcr_calls: int
    csat: float | None
    csat_answers: int
    sentiment_start: float | None
    sentiment_end: float | None
    qa_score: float | None
    qa_calls: int
    top_failures: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class KpiReport:
    since: str
    until: str
    pack: str | None
    total: KpiRow
    days: list[KpiRow]  # one row a day: the trend
    rows: list[KpiRow]  # one row per day, pack and intent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kpi_report(
    store: Store,
    since: datetime,
    until: datetime,
    pack: str | None = None,
    *,
    fcr_days: int = FCR_DAYS,
) -> KpiReport:
    """The KPIs of the calls started in [since, until); ``NoCallsError`` when there are none.

    This is the query a supervisor page calls: one read of the range (plus ``fcr_days``
    after it, to see repeat calls), the handoff rows and the scorecards of those calls."""
    horizon = until + timedelta(days=fcr_days)
    records = store.calls_between(_iso(since), _iso(horizon), pack)
    in_range = [r for r in records if _parse_time(r["started_at"]) < until]
    if not in_range:
        where = f" of pack {pack}" if pack else ""
        raise NoCallsError(f"no calls{where} between {_iso(since)} and {_iso(until)}")
    handoffs = {h["call_id"]: h for h in store.handoffs_of([r["call_id"] for r in in_range])}
    cards = {c["call_id"]: c for c in store.list_scorecards(_iso(since), _iso(until), pack)}
    facts = [call_facts(r, handoffs.get(r["call_id"]), cards.get(r["call_id"])) for r in in_range]
    later = [call_facts(r) for r in records if _parse_time(r["started_at"]) >= until]
    resolved = first_call_resolution(facts, [*facts, *later], timedelta(days=fcr_days))
    groups: dict[tuple[str, str, str], list[CallFacts]] = {}
    days: dict[str, list[CallFacts]] = {}
    for fact in facts:
        groups.setdefault((fact.day, fact.pack, fact.intent), []).append(fact)
        days.setdefault(fact.day, []).append(fact)
    return KpiReport(
        since=_iso(since),
        until=_iso(until),
        pack=pack,
        total=kpi_row(facts, resolved),
        days=[kpi_row(days[d], resolved, day=d) for d in sorted(days)],
        rows=[
            kpi_row(groups[key], resolved, day=key[0], pack=key[1], intent=key[2])
            for key in sorted(groups)
        ],
    )


def first_call_resolution(
    facts: list[CallFacts], every: list[CallFacts], window: timedelta
) -> dict[str, bool]:
    """Call id -> resolved on first contact: no call from the same caller about the same
    intent within ``window`` after it. Calls without caller ID or intent are not judged."""
    by_caller: dict[tuple[str, str], list[datetime]] = {}
    for fact in every:
        if fact.caller_id and fact.intent != NO_INTENT:
            by_caller.setdefault((fact.caller_id, fact.intent), []).append(fact.started_at)
    resolved = {}
    for fact in facts:
        if not fact.caller_id or fact.intent == NO_INTENT:
            continue
        starts = by_caller[(fact.caller_id, fact.intent)]
        resolved[fact.call_id] = not any(
            fact.started_at < t <= fact.started_at + window for t in starts
        )
    return resolved


def kpi_row(
    facts: list[CallFacts],
    resolved: dict[str, bool],
    *,
    day: str | None = None,
    pack: str | None = None,
    intent: str | None = None,
) -> KpiRow:
    n = len(facts)
    handoffs = Counter(f.handoff_reason for f in facts if f.handoff_reason)
    measured = [f.abandoned for f in facts if f.abandoned is not None]
    fcr = [resolved[f.call_id] for f in facts if f.call_id in resolved]
    csat = [f.csat for f in facts if f.csat is not None]
    qa = [f.qa_score for f in facts if f.qa_score is not None]
    contained = sum(f.contained for f in facts)
    return KpiRow(
        day=day,
        pack=pack,
        intent=intent,
        calls=n,
        contained=contained,
        containment=round(contained / n, 3),
        handoffs=dict(sorted(handoffs.items())),
        handoff_rate={r: round(c / n, 3) for r, c in sorted(handoffs.items())},
        bot_handle_s=_mean(f.bot_handle_s for f in facts) or 0.0,
        human_handle_s=_mean(f.human_handle_s for f in facts),
        queue_wait_s=_mean(f.queue_wait_s for f in facts),
        abandoned=sum(measured) if measured else None,
        abandonment=round(sum(measured) / len(measured), 3) if measured else None,
        fcr=round(sum(fcr) / len(fcr), 3) if fcr else None,
        fcr_calls=len(fcr),
        csat=_mean(csat),
        csat_answers=len(csat),
        sentiment_start=_mean(f.sentiment_start for f in facts),
        sentiment_end=_mean(f.sentiment_end for f in facts),
        qa_score=_mean(qa),
        qa_calls=len(qa),
        top_failures=Counter(x for f in facts for x in f.failures).most_common(_TOP_FAILURES),
    )


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 2) if present else None


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    """UTC ISO time, as calls' ``started_at`` is written (so strings compare as times)."""
    return moment.astimezone(UTC).isoformat()


# --- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = [
    "day", "pack", "intent", "calls", "contained", "containment",
    *(f"handoff_rate_{reason}" for reason in HANDOFF_REASONS),
    "bot_handle_s", "human_handle_s", "queue_wait_s", "abandoned", "abandonment",
    "fcr", "fcr_calls", "csat", "csat_answers", "sentiment_start", "sentiment_end",
    "qa_score", "qa_calls", "top_failures",
]  # fmt: skip


def csv_row(row: KpiRow) -> dict[str, Any]:
    """One row of ``voicebot report kpis --csv``: rates flattened to one column a reason."""
    data = asdict(row)
    data |= {f"handoff_rate_{r}": row.handoff_rate.get(r, 0.0) for r in HANDOFF_REASONS}
    data["top_failures"] = "; ".join(f"{name} {count}" for name, count in row.top_failures)
    return {k: ("" if data[k] is None else data[k]) for k in CSV_COLUMNS}


# --- live figures on /metrics ----------------------------------------------------------------

KPI_CALLS = MetricCounter("voicebot_kpi_calls", "Finished calls by outcome", ["pack", "outcome"])
HANDLE_TIME = Histogram(
    "voicebot_handle_seconds",
    "Handle time of a call's part (bot; human in a live transfer)",
    ["pack", "part"],
    buckets=(15, 30, 60, 90, 120, 180, 300, 600, 1200),
)
CSAT = Histogram(
    "voicebot_csat", "Post-call survey scores (1-5)", ["pack"], buckets=(1, 2, 3, 4, 5)
)
QA_SCORE = Histogram(
    "voicebot_qa_score",
    "QA score of a call's part (0-100)",
    ["pack", "part"],
    buckets=(50, 60, 70, 80, 90, 95, 100),
)
QA_FAILURES = MetricCounter(
    "voicebot_qa_failures", "Failed QA criteria", ["pack", "part", "criterion"]
)
SENTIMENT_CHANGE = Histogram(
    "voicebot_caller_sentiment_change",
    "Caller valence at the end of a call minus at its start",
    ["pack"],
    buckets=(-2, -1, -0.5, 0, 0.5, 1, 2),
)


def record_kpis(record: dict[str, Any], card: Scorecard | None) -> None:
    """Count one finished call on /metrics (called by the QA scorer's thread)."""
    facts = call_facts(record)
    pack = facts.pack or "unknown"
    outcome = "abandoned" if facts.abandoned else "contained" if facts.contained else "handoff"
    KPI_CALLS.labels(pack, outcome).inc()
    HANDLE_TIME.labels(pack, "bot").observe(facts.bot_handle_s)
    if facts.human_handle_s is not None:
        HANDLE_TIME.labels(pack, "human").observe(facts.human_handle_s)
    if facts.csat is not None:
        CSAT.labels(pack).observe(facts.csat)
    if facts.sentiment_start is not None and facts.sentiment_end is not None:
        SENTIMENT_CHANGE.labels(pack).observe(facts.sentiment_end - facts.sentiment_start)
    for part in card.parts if card else ():
        if part.score is not None:
            QA_SCORE.labels(pack, part.part).observe(part.score)
        for name in part.failed:
            QA_FAILURES.labels(pack, part.part, name).inc()
