"""One process's handoff machinery: the store, its writer, its worker lease, the webhook
dispatchers and the supervisor alerts.

Built once per process (``voicebot serve`` or ``voicebot call``) from flags or environment:

- ``VOICEBOT_DB_URL``: the database (default ``sqlite:///var/voicebot.db``);
- ``VOICEBOT_WEBHOOK_URLS``: comma-separated receivers of handoff packets;
- ``VOICEBOT_ALERT_WEBHOOK_URLS``: comma-separated receivers of supervisor alerts
  (``voicebot.qa.alerts``);
- ``VOICEBOT_WEBHOOK_SECRET``: the HMAC key deliveries are signed with (required with URLs).
"""

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from voicebot.errors import VoicebotError
from voicebot.handoff.webhooks import WebhookDispatcher
from voicebot.qa.alerts import AlertConfig, AlertMonitor
from voicebot.qa.kpis import record_kpis
from voicebot.qa.scorecard import LLMJudge, QaScorer, Scorecard
from voicebot.store.lease import WorkerLease
from voicebot.store.schema import alert_outbox
from voicebot.store.store import Store, default_url
from voicebot.store.writer import StoreWriter, Summarizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandoffConfig:
    db_url: str
    webhooks: tuple[str, ...] = ()
    webhook_secret: str = ""
    spool_dir: str = "var/spool"
    alert_webhooks: tuple[str, ...] = ()
    alerts: AlertConfig = field(default_factory=AlertConfig)

    @classmethod
    def resolve(
        cls,
        db_url: str | None = None,
        webhooks: tuple[str, ...] = (),
        webhook_secret: str | None = None,
        alert_webhooks: tuple[str, ...] = (),
        alerts: AlertConfig | None = None,
    ) -> "HandoffConfig":
        """Flags win over the environment; webhooks without a secret are refused."""
        urls = webhooks or _urls("VOICEBOT_WEBHOOK_URLS")
        alert_urls = alert_webhooks or _urls("VOICEBOT_ALERT_WEBHOOK_URLS")
        secret = webhook_secret or os.environ.get("VOICEBOT_WEBHOOK_SECRET", "")
        for url in (*urls, *alert_urls):
            if not url.startswith(("http://", "https://")):
                raise VoicebotError(f"webhook URL must start with http:// or https://: {url!r}")
        if (urls or alert_urls) and not secret:
            raise VoicebotError(
                "webhooks need a signing secret: set VOICEBOT_WEBHOOK_SECRET or --webhook-secret"
            )
        config = alerts or AlertConfig()
        return cls(db_url or default_url(), urls, secret, alert_webhooks=alert_urls, alerts=config)


def _urls(variable: str) -> tuple[str, ...]:
    return tuple(u.strip() for u in os.environ.get(variable, "").split(",") if u.strip())


class HandoffService:
    """Opens the store (``StoreError`` if it can't), takes this process's worker lease (and
    marks the calls dead processes left live ``interrupted``: ``voicebot.store.lease``), and
    runs webhook delivery if configured."""

    def __init__(
        self,
        config: HandoffConfig,
        summarizer: Summarizer | None = None,
        judge: LLMJudge | None = None,
    ) -> None:
        self.config = config
        self.store = Store(config.db_url)
        self.lease = WorkerLease(self.store)
        self.lease.renew()  # held before this process writes any call
        # Supervisor alerts, from what the writer stores and the scorer scores.
        self.alerts = AlertMonitor(self.store, config.alert_webhooks, config.alerts)
        # Every finished call is QA-scored (its pack's form, intents/qa/) in its own thread.
        self.qa = QaScorer(self.store, judge, observe=self._scored)
        self.writer = StoreWriter(
            self.store,
            spool_dir=config.spool_dir,
            webhooks=config.webhooks,
            summarizer=summarizer,
            on_finished=self.qa.submit,
            on_saved=self.alerts.on_saved,
            worker_id=self.lease.worker_id,
        )
        self.writer.flush()  # what an earlier process spooled is stored before recovery
        self.recovered = self.lease.start()
        secret = config.webhook_secret
        self.dispatcher = WebhookDispatcher(self.store, secret) if config.webhooks else None
        self.alert_dispatcher = (
            WebhookDispatcher(self.store, secret, outbox=alert_outbox)
            if config.alert_webhooks
            else None
        )
        self._threads: list[threading.Thread] = []

    def _scored(self, record: dict[str, Any], card: Scorecard | None) -> None:
        record_kpis(record, card)
        self.alerts.on_scored(record, card)

    def lockout(self, pack: str):  # -> VerificationLockout
        """Failed verifications counted in this store, so every process sees them."""
        from voicebot.dialog.pack import load_pack
        from voicebot.privacy.lockout import VerificationLockout

        limit = load_pack(pack).privacy.verification_failures_per_day
        return VerificationLockout(self.store, max_failures=limit)

    def start_webhooks(self) -> None:
        """Deliver handoffs and alerts in the background, and sweep the queue for long
        waits (servers); ``deliver_now`` suits one-shot commands."""
        if self._threads:
            return
        for dispatcher in filter(None, (self.dispatcher, self.alert_dispatcher)):
            thread = threading.Thread(target=dispatcher.run, name="voicebot-webhooks", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.alerts.start()

    def deliver_now(self) -> int:
        """One delivery pass: what is undelivered stays in the outbox for the next run."""
        self.writer.flush()
        return self.dispatcher.deliver_due() if self.dispatcher else 0

    def close(self) -> None:
        for dispatcher in filter(None, (self.dispatcher, self.alert_dispatcher)):
            dispatcher.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self.writer.close()
        self.lease.stop()
        self.qa.close()
        self.alerts.close()  # after the writer and the scorer: they feed it
        self.store.close()
