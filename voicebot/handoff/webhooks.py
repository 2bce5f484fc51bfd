"""Webhook delivery of handoff packets: signed, retried with backoff, never lost.

Deliveries live in the store's outbox (written with the handoff in one transaction), so a
receiver that is slow, down or answering 500 only delays a packet. Each POST carries

    X-Voicebot-Timestamp: <unix seconds>
    X-Voicebot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

Receivers recompute the HMAC over the raw body and reject stale timestamps (replays); see
``verify`` for the reference check. Each attempt first claims its row in the database
(``Store.claim_delivery``), so processes delivering at once (the servers' loops, an
operator's ``voicebot handoffs deliver --now``) never post a packet twice. Delivery is
still at least once (a process that dies between the POST and noting it leaves the row to
be retried once its claim runs out): receivers dedupe on ``handoff_id``. Supervisor alerts
(``voicebot.qa.alerts``) travel the same way from their own outbox
(``outbox=alert_outbox``), deduped on ``alert_id``.
"""

import hashlib
import hmac
import logging
import random
import threading
import time

import httpx
from sqlalchemy import Table

from voicebot.store.schema import webhook_outbox
from voicebot.store.store import Store

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Voicebot-Signature"
TIMESTAMP_HEADER = "X-Voicebot-Timestamp"


def sign(body: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(body: bytes, secret: str, timestamp: str, signature: str, max_age_s: int = 300) -> bool:
    """What a receiver should do: constant-time compare, and refuse old timestamps."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - stamp) > max_age_s:
        return False
    return hmac.compare_digest(sign(body, secret, stamp), signature)


class WebhookDispatcher:
    """Delivers due outbox entries; ``run`` in a thread, or ``deliver_due`` once."""

    def __init__(
        self,
        store: Store,
        secret: str,
        *,
        timeout_s: float = 5.0,
        claim_s: float = 60.0,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        max_attempts: int = 12,
        outbox: Table = webhook_outbox,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required to sign deliveries")
        self.store = store
        self._secret = secret
        self._timeout = timeout_s
        self._claim_s = max(claim_s, 2 * timeout_s)  # an attempt never outlives its claim
        self._base, self._max_delay, self._max_attempts = base_delay_s, max_delay_s, max_attempts
        self._outbox = outbox
        self._stop = threading.Event()

    def deliver_due(self, *, due_or_not: bool = False) -> int:
        """Try each delivery that is due now (``due_or_not``: also those waiting for a retry)
        once, if this process gets its claim; returns how many succeeded."""
        delivered = 0
        seen: set[int] = set()
        with httpx.Client(timeout=self._timeout) as client:
            while True:
                now = time.time()
                batch = self.store.due_deliveries(
                    now, len(seen) + 20, due_or_not=due_or_not, outbox=self._outbox
                )
                fresh = [item for item in batch if item["id"] not in seen]
                if not fresh:
                    return delivered
                for item in fresh:
                    seen.add(item["id"])
                    claimed = self.store.claim_delivery(
                        item["id"], time.time(), self._claim_s, outbox=self._outbox
                    )
                    if claimed is not None:  # as it is now: another process may have tried
                        delivered += self._deliver(client, claimed)

    def run(self, poll_s: float = 0.5) -> None:
        """Deliver until ``stop``; a database hiccup is logged and retried, never fatal."""
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception as exc:  # keep delivering once the store is back
                log.warning("webhook delivery paused: %s", exc)
            self._stop.wait(poll_s)

    def stop(self) -> None:
        self._stop.set()

    def _deliver(self, client: httpx.Client, item: dict) -> bool:
        body = item["body"].encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(body, self._secret, stamp),
        }
        attempts = item["attempts"] + 1
        try:
            response = client.post(item["url"], content=body, headers=headers)
            if 200 <= response.status_code < 300:
                self.store.delivery_done(item["id"], attempts, outbox=self._outbox)
                return True
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        retry_at = None
        if attempts < self._max_attempts:
            delay = min(self._base * 2 ** (attempts - 1), self._max_delay)
            retry_at = time.time() + delay * random.uniform(0.8, 1.2)  # jitter: no herd
        self.store.delivery_failed(item["id"], attempts, error, retry_at, outbox=self._outbox)
        log.warning("webhook %s attempt %d failed (%s)", item["url"], attempts, error)
        return False
