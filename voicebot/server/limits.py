"""What one server lets a client hold or do, and a count of every refusal by kind.

Two shapes of limit cover it:

- a ``Budget`` caps what is held at once (sockets waiting for ``start``, event-stream
  clients): taken on entry, given back on exit, refused when spent;
- a ``RateLimiter`` caps how often one key (a client address, a user name) may do something
  (sign in, start a browser call): a token bucket per key, refilled continuously.

Each refusal is counted in ``voicebot_refused_total{kind=...}`` (``refused(kind)``), so an
operator sees which limit bites. The defaults live in ``Limits``; per-connection budgets
(message rates on a line) extend the same pattern.
"""

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from voicebot.server import metrics


@dataclass(frozen=True)
class Rate:
    """``count`` events per ``per_s`` seconds, in a burst of up to ``count``."""

    count: int
    per_s: float


@dataclass(frozen=True)
class Limits:
    """The server's limits (``ServerConfig.limits``)."""

    waiting_sockets: int = 32  # WebSockets accepted but not yet past "start"
    event_streams: int = 64  # agent desktops following the handoff queue at once
    body_bytes: int = 64 * 1024  # any HTTP request body (Twilio's form posts are ~2 KB)
    sign_in_per_client: Rate = field(default_factory=lambda: Rate(30, 60.0))  # a proxy: all
    sign_in_per_name: Rate = field(default_factory=lambda: Rate(5, 300.0))  # failures only
    calls_per_client: Rate = field(default_factory=lambda: Rate(6, 60.0))  # browser calls


def refused(kind: str) -> None:
    """Count one refusal of ``kind`` (e.g. ``"waiting_sockets"``, ``"sign_in_rate"``)."""
    metrics.REFUSED.labels(kind).inc()


class Budget:
    """At most ``limit`` held at once (used from the event loop only)."""

    def __init__(self, kind: str, limit: int) -> None:
        self.kind = kind
        self.limit = limit
        self.held = 0

    def take(self) -> Callable[[], None] | None:
        """A place, as the function that gives it back (calling it twice gives back once),
        or None when all are held (counted as refused)."""
        if self.held >= self.limit:
            refused(self.kind)
            return None
        self.held += 1
        given = False

        def give() -> None:
            nonlocal given
            if not given:
                given = True
                self.held -= 1

        return give

    @contextmanager
    def hold(self) -> Iterator[bool]:
        """``with budget.hold() as ok:`` where ``ok`` says whether this one got a place."""
        give = self.take()
        try:
            yield give is not None
        finally:
            if give is not None:
                give()


class RateLimiter:
    """A token bucket per key. Keys are bounded (least recently used dropped), so a flood of
    fresh addresses costs at most ``max_keys`` buckets; a dropped key starts full again,
    which only forgives someone who has been quiet while ``max_keys`` others came."""

    def __init__(
        self,
        kind: str,
        rate: Rate,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.rate = rate
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()  # sign-in runs in worker threads

    def retry_after(self, key: str) -> float:
        """0 if ``key`` may go now, else the seconds until it may (nothing is spent)."""
        with self._lock:
            tokens = self._tokens(key)
        return 0.0 if tokens >= 1 else (1 - tokens) * self.rate.per_s / self.rate.count

    def spend(self, key: str) -> None:
        """Use one event of ``key``'s budget (it may go negative no further than empty)."""
        with self._lock:
            tokens = self._tokens(key)
            self._buckets[key] = (max(0.0, tokens - 1), self._clock())
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)

    def take(self, key: str) -> float:
        """Spend one event if allowed: 0, or the seconds to wait (then counted as refused)."""
        wait = self.retry_after(key)
        if wait:
            refused(self.kind)
        else:
            self.spend(key)
        return wait

    def _tokens(self, key: str) -> float:
        tokens, at = self._buckets.get(key, (float(self.rate.count), self._clock()))
        refill = (self._clock() - at) * self.rate.count / self.rate.per_s
        return min(float(self.rate.count), tokens + refill)


def wait_text(seconds: float) -> str:
    """'try again in 12 s', rounded up so that the client never retries too early."""
    return f"try again in {max(1, math.ceil(seconds))} s"
