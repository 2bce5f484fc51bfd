"""Real-time alerts for supervisors: angry callers, long queue waits, repeated failures and
QA violations, raised as calls happen, shown live on ``/supervisor`` and POSTed as signed
webhooks.

Where each comes from (never the event loop):

- ``angry_caller`` and ``repeated_failures``: each call snapshot the store's writer has just
  written (its ``on_saved`` hook, on the writer thread), read on the monitor's own thread;
- ``qa_violation``: each scorecard as the QA scorer stores it (its ``observe`` hook);
- ``long_queue_wait``: a sweep of the queued handoffs every ``sweep_s`` (``run``, started by
  ``voicebot serve``).

An alert's id names its subject (``angry_caller:<call_id>``, ``long_queue_wait:<handoff_id>``),
so each is raised once per call or handoff; when several workers see the same thing (every
worker sweeps the shared queue) the database keeps the first and the others write nothing
(``Store.add_alert``). The alert and its webhook deliveries are one transaction, so a receiver
that is down gets it later (``voicebot.handoff.webhooks``, from the ``alert_outbox``).
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from prometheus_client import Counter

from voicebot.qa.criteria import Verdict
from voicebot.qa.scorecard import Scorecard
from voicebot.store.store import Store

log = logging.getLogger(__name__)

AlertKind = Literal["angry_caller", "long_queue_wait", "repeated_failures", "qa_violation"]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)
_NO_PROGRESS = frozenset({"fallback", "reprompt"})  # bot replies that got the caller nowhere
_REMEMBERED = 20_000  # alert ids this process knows are raised (the database knows them all)

ALERTS = Counter("voicebot_alerts", "Supervisor alerts raised (by this worker)", ["kind"])


@dataclass(frozen=True)
class AlertConfig:
    """When an alert fires (``voicebot serve --alert-queue-wait-s`` sets the wait)."""

    anger: float = 1.0  # a caller turn this angry (the escalation lexicon's score: clearly)
    failures: int = 2  # bot replies in a row that made no progress (fallbacks, re-prompts)
    queue_wait_s: float = 60.0  # a handed-off caller waiting this long for an agent
    sweep_s: float = 2.0  # how often the queue is swept for long waits


@dataclass(frozen=True)
class Alert:
    alert_id: str
    kind: AlertKind
    call_id: str | None
    handoff_id: str | None
    pack: str | None
    created_at: float
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quote(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_alerts(record: dict[str, Any], config: AlertConfig, now: float) -> list[Alert]:
    """The alerts a call record (as stored) shows so far: an angry caller turn, the bot
    failing the caller ``config.failures`` times in a row (or handing off for it)."""
    call_id, pack = record["call_id"], record.get("pack")
    turns = record.get("turns") or []
    found = []
    for index, turn in enumerate(turns):
        signals = (turn.get("policy") or {}).get("signals") or {}
        anger = float(signals.get("anger") or 0.0)
        if turn.get("role") == "caller" and anger >= config.anger:
            cues = list(signals.get("anger_cues") or [])
            said = ", ".join(f"“{c}”" for c in cues) or "earlier turns"
            found.append(
                Alert(
                    f"angry_caller:{call_id}",
                    "angry_caller",
                    call_id,
                    None,
                    pack,
                    now,
                    f"Angry caller (anger {anger:.1f}: {said})",
                    {"turn": index, "anger": anger, "cues": cues, "quote": _quote(turn["text"])},
                )
            )
            break
    streak: list[int] = []
    for index, turn in enumerate(turns):
        if turn.get("role") != "bot":
            continue
        streak = [*streak, index] if turn.get("kind") in _NO_PROGRESS else []
        if len(streak) >= config.failures:
            break
    handed_off = record.get("handoff_reason") == "repeated_failure"
    if len(streak) >= config.failures or handed_off:
        why = (
            f"the bot made no progress {len(streak)} times in a row"
            if len(streak) >= config.failures
            else "handed off after repeated failures"
        )
        found.append(
            Alert(
                f"repeated_failures:{call_id}",
                "repeated_failures",
                call_id,
                None,
                pack,
                now,
                why[0].upper() + why[1:],
                {"turns": streak, "handoff_reason": record.get("handoff_reason")},
            )
        )
    return found


def scorecard_alert(record: dict[str, Any], card: Scorecard, now: float) -> Alert | None:
    """A QA violation: a part of the call that failed its form (a critical criterion, or
    a score under the pass mark)."""
    if card.passed is not False:
        return None
    critical = [
        f"{p.part}:{r.criterion}"
        for p in card.parts
        for r in p.results
        if r.critical and r.verdict == Verdict.FAIL
    ]
    scores = {p.part: p.score for p in card.parts}
    failed = ", ".join(card.failed)
    score = ", ".join(f"{part} {s:g}" for part, s in scores.items() if s is not None)
    return Alert(
        f"qa_violation:{card.call_id}",
        "qa_violation",
        card.call_id,
        None,
        card.pack,
        now,
        f"QA failed ({score}): {failed}" + (" — critical" if critical else ""),
        {"failed": card.failed, "critical": critical, "scores": scores, "form": card.form},
    )


def queue_alerts(queued: Iterable[dict[str, Any]], config: AlertConfig, now: float) -> list[Alert]:
    """Handed-off callers waiting ``config.queue_wait_s`` or longer for an agent."""
    found = []
    for row in queued:
        waited = now - row["created_at"]
        if row["status"] != "queued" or waited < config.queue_wait_s:
            continue
        found.append(
            Alert(
                f"long_queue_wait:{row['handoff_id']}",
                "long_queue_wait",
                row["call_id"],
                row["handoff_id"],
                (row.get("packet") or {}).get("pack"),
                now,
                f"Caller waiting {waited:.0f} s for an agent ({row['reason']})",
                {"waited_s": round(waited, 1), "reason": row["reason"]},
            )
        )
    return found


class AlertMonitor:
    """Raises alerts from the store's hooks and the queue sweep, on its own threads."""

    def __init__(
        self,
        store: Store,
        webhooks: tuple[str, ...] = (),
        config: AlertConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.webhooks = webhooks
        self.config = config or AlertConfig()
        self._clock = clock
        self._raised: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()  # the checks' thread and the sweep's both raise
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="voicebot-alerts")
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # --- hooks (they only queue) ---------------------------------------------------------

    def on_saved(self, snapshot: dict[str, Any]) -> None:
        """The store writer stored this call snapshot (``StoreWriter(on_saved=...)``)."""
        self._pool.submit(self._guarded, self._check_record, snapshot)

    def on_scored(self, record: dict[str, Any], card: Scorecard | None) -> None:
        """The QA scorer stored this scorecard (``QaScorer(observe=...)``)."""
        if card is not None:
            self._pool.submit(self._guarded, self._check_scorecard, record, card)

    # --- the queue sweep -----------------------------------------------------------------

    def sweep(self) -> int:
        """Raise the long-wait alerts of the queue now; returns how many were new."""
        queued = self.store.list_handoffs("queued", limit=1000)
        return self._raise(queue_alerts(queued, self.config, self._clock()))

    def start(self) -> None:
        """Sweep every ``config.sweep_s`` in a thread until ``close``."""
        if self._sweeper is None:
            self._sweeper = threading.Thread(
                target=self._sweep_loop, name="voicebot-alert-sweep", daemon=True
            )
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.config.sweep_s):
            try:
                self.sweep()
            except Exception as exc:  # a database hiccup: sweep again next time
                log.warning("alert sweep failed: %s", exc)

    # --- lifecycle -----------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every queued check is done (tests, one-shot commands)."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        self._pool.shutdown(wait=True)

    # --- raising -------------------------------------------------------------------------

    def _check_record(self, snapshot: dict[str, Any]) -> None:
        self._raise(record_alerts(snapshot, self.config, self._clock()))

    def _check_scorecard(self, record: dict[str, Any], card: Scorecard) -> None:
        alert = scorecard_alert(record, card, self._clock())
        self._raise([alert] if alert else [])

    def _raise(self, alerts: list[Alert]) -> int:
        with self._lock:
            return sum(self._raise_one(alert) for alert in alerts)

    def _raise_one(self, alert: Alert) -> bool:
        """Store ``alert`` unless this process or another raised it already."""
        if alert.alert_id in self._raised:
            return False
        new = self.store.add_alert(alert.to_dict(), self.webhooks)
        if new:
            ALERTS.labels(alert.kind).inc()
            log.warning("alert %s: %s (call %s)", alert.kind, alert.message, alert.call_id)
        self._raised[alert.alert_id] = None
        while len(self._raised) > _REMEMBERED:
            self._raised.popitem(last=False)
        return new

    @staticmethod
    def _guarded(check: Callable[..., None], *args: Any) -> None:
        try:
            check(*args)
        except Exception:  # one bad record (or a database hiccup) must not stop the others
            log.exception("alert check failed")
