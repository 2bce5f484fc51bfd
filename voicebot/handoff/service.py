"""One process's handoff machinery: the store, its writer and the webhook dispatcher.

Built once per process (``voicebot serve`` or ``voicebot call``) from flags or environment:

- ``VOICEBOT_DB_URL``: the database (default ``sqlite:///var/voicebot.db``);
- ``VOICEBOT_WEBHOOK_URLS``: comma-separated receivers of handoff packets;
- ``VOICEBOT_WEBHOOK_SECRET``: the HMAC key deliveries are signed with (required with URLs).
"""

import logging
import os
import threading
from dataclasses import dataclass

from voicebot.errors import VoicebotError
from voicebot.handoff.webhooks import WebhookDispatcher
from voicebot.qa.kpis import record_kpis
from voicebot.qa.scorecard import LLMJudge, QaScorer
from voicebot.store.store import Store, default_url
from voicebot.store.writer import StoreWriter, Summarizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandoffConfig:
    db_url: str
    webhooks: tuple[str, ...] = ()
    webhook_secret: str = ""
    spool_dir: str = "var/spool"

    @classmethod
    def resolve(
        cls,
        db_url: str | None = None,
        webhooks: tuple[str, ...] = (),
        webhook_secret: str | None = None,
    ) -> "HandoffConfig":
        """Flags win over the environment; webhooks without a secret are refused."""
        urls = webhooks or tuple(
            u.strip() for u in os.environ.get("VOICEBOT_WEBHOOK_URLS", "").split(",") if u.strip()
        )
        secret = webhook_secret or os.environ.get("VOICEBOT_WEBHOOK_SECRET", "")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise VoicebotError(f"webhook URL must start with http:// or https://: {url!r}")
        if urls and not secret:
            raise VoicebotError(
                "webhooks need a signing secret: set VOICEBOT_WEBHOOK_SECRET or --webhook-secret"
            )
        return cls(db_url or default_url(), urls, secret)


class HandoffService:
    """Opens the store (``StoreError`` if it can't) and runs webhook delivery if configured."""

    def __init__(
        self,
        config: HandoffConfig,
        summarizer: Summarizer | None = None,
        judge: LLMJudge | None = None,
    ) -> None:
        self.config = config
        self.store = Store(config.db_url)
        # Every finished call is QA-scored (its pack's form, intents/qa/) in its own thread.
        self.qa = QaScorer(self.store, judge, observe=record_kpis)
        self.writer = StoreWriter(
            self.store,
            spool_dir=config.spool_dir,
            webhooks=config.webhooks,
            summarizer=summarizer,
            on_finished=self.qa.submit,
        )
        self.dispatcher = (
            WebhookDispatcher(self.store, config.webhook_secret) if config.webhooks else None
        )
        self._thread: threading.Thread | None = None

    def lockout(self, pack: str):  # -> VerificationLockout
        """Failed verifications counted in this store, so every process sees them."""
        from voicebot.dialog.pack import load_pack
        from voicebot.privacy.lockout import VerificationLockout

        limit = load_pack(pack).privacy.verification_failures_per_day
        return VerificationLockout(self.store, max_failures=limit)

    def start_webhooks(self) -> None:
        """Deliver in the background (servers); ``deliver_now`` suits one-shot commands."""
        if self.dispatcher is not None and self._thread is None:
            self._thread = threading.Thread(
                target=self.dispatcher.run, name="voicebot-webhooks", daemon=True
            )
            self._thread.start()

    def deliver_now(self) -> int:
        """One delivery pass: what is undelivered stays in the outbox for the next run."""
        self.writer.flush()
        return self.dispatcher.deliver_due() if self.dispatcher else 0

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.writer.close()
        self.qa.close()
        self.store.close()
