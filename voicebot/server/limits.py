"""What one server lets a client hold or do, and a count of every refusal by kind.

Two shapes of limit cover it:

- a ``Budget`` caps what is held at once (event-stream clients): taken on entry, given
  back on exit, refused when spent (sockets waiting for ``start`` are a ``WaitingRoom``:
  when it is full, the one that waited longest leaves, so idle sockets never keep a caller
  out);
- a ``RateLimiter`` caps how often one key (a client address, a user name) may do something
  (sign in, start a browser call): a token bucket per key, refilled continuously.

Per connection, a ``ReadBudget`` paces what one line's peer may send (see its docstring):
a flood on one socket never starves another call's audio. ``PeerLog`` keeps what peers do
wrong from flooding the log: one line per kind of problem now and then, with a count.

Each refusal is counted in ``voicebot_refused_total{kind=...}`` (``refused(kind)``), so an
operator sees which limit bites. The defaults live in ``Limits``.
"""

import asyncio
import itertools
import logging
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
    event_streams: int = 64  # live pages (agent desktops, supervisor views) at once
    body_bytes: int = 64 * 1024  # any HTTP request body (Twilio's form posts are ~2 KB)
    sign_in_per_client: Rate = field(default_factory=lambda: Rate(30, 60.0))  # a proxy: all
    sign_in_per_name: Rate = field(default_factory=lambda: Rate(5, 300.0))  # failures only
    calls_per_client: Rate = field(default_factory=lambda: Rate(6, 60.0))  # browser calls
    # One line's messages: a live peer sends 50 a second (20 ms of audio each) and a few
    # marks or keys; 100 a second, in bursts of 300 (a network stall's backlog), is plenty.
    line_messages: Rate = field(default_factory=lambda: Rate(300, 3.0))
    line_reads_per_tick: int = 10  # messages of one line handled per 20 ms, then it waits
    # An unsigned peer (--insecure-twilio, --public-call) streams this much audio at
    # real-time pace before it takes a call slot: junk that only says "start" takes none.
    proof_of_audio_s: float = 0.5


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


class WaitingRoom:
    """The sockets accepted but not in a call yet, at most ``limit``. When it is full, the one
    that has waited longest makes room for the newcomer (its ``evict`` closes it, with a
    reason; counted as ``waiting_sockets``): a real caller says ``start`` at once, so idle
    sockets, however many, never keep one out; they only push each other out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: OrderedDict[int, Callable[[], None]] = OrderedDict()
        self._ids = itertools.count()

    def enter(self, evict: Callable[[], None]) -> Callable[[], None]:
        """Take a place (making room if need be); returns the function that leaves it."""
        while len(self._waiting) >= self.limit:
            refused("waiting_sockets")
            _, oldest = self._waiting.popitem(last=False)
            oldest()
        key = next(self._ids)
        self._waiting[key] = evict
        return lambda: self._waiting.pop(key, None)


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


class ReadBudget:
    """What one connection's peer may send: at most ``per_tick`` messages are handled per
    ``tick_s`` (then the reader waits for the next tick, so a flood on one socket cannot
    hold the event loop while other calls' audio waits, and the unread messages stay in
    the socket's buffers, which pushes back on the sender), and at most ``rate`` over
    time: beyond it, ``spend`` says why the line must be closed (counted ``line_rate``)."""

    def __init__(
        self,
        rate: Rate,
        per_tick: int,
        *,
        tick_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = RateLimiter("line_rate", rate, max_keys=1, clock=clock)
        self._per_tick = per_tick
        self._tick_s = tick_s
        self._clock = clock
        self._tick_start = clock()
        self._this_tick = 0

    def spend(self) -> str | None:
        """Count one message: None, or why the peer is no live line (it sends too much)."""
        if self._bucket.take(""):
            rate = self._bucket.rate
            return f"over {rate.count / rate.per_s:g} messages a second: not a live stream"
        self._this_tick += 1
        return None

    async def pace(self) -> None:
        """Yield to the other calls; once this tick's budget is spent, wait for the next."""
        now = self._clock()
        if now - self._tick_start >= self._tick_s:
            self._tick_start, self._this_tick = now, 0
        if self._this_tick >= self._per_tick:
            await asyncio.sleep(self._tick_start + self._tick_s - now)
            self._tick_start, self._this_tick = self._clock(), 0
        else:
            await asyncio.sleep(0)


class PeerLog:
    """Log lines about peers that misbehave (unknown events, bad messages), at most one per
    kind every ``every_s``: the next one says how many were left out. A flood of bad
    messages thus costs a few lines, not one each (every line also passes the log
    redactor, which is not free). Each problem is counted in
    ``voicebot_peer_errors_total{kind=...}`` whether it is logged or not."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}  # kind -> when last logged
        self._left_out: dict[str, int] = {}

    def note(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """One problem of ``kind`` (a short fixed name, e.g. ``twilio_unknown_event``)."""
        metrics.PEER_ERRORS.labels(kind).inc()
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._every_s:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            message += f" (and {left_out} more of this kind in the last {now - last:.0f} s)"
        self._log.log(level, "%s", message)


def wait_text(seconds: float) -> str:
    """'try again in 12 s', rounded up so that the client never retries too early."""
    return f"try again in {max(1, math.ceil(seconds))} s"
