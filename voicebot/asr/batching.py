"""One recognizer for every call of a process: requests micro-batched on one model.

The usual design runs one Whisper per call, so a GPU spends its time launching tiny kernels
for one clip at a time. Here every call submits to one engine; a worker thread gathers what
arrives within a short window (or while the previous batch ran) into one batch, runs one
forward pass and hands each call its own result.

Order and overload: finals (a caller waits on them) go before partials (a progress display);
a call's newer partial replaces its queued older one; when the queue is full, or a partial
has waited too long to still be news, partials are dropped, so finals are never delayed by
them. A call that hangs up cancels its requests: queued ones are never run, running ones are
discarded, and nobody else waits for them.
"""

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from voicebot.asr.base import ASRContext
from voicebot.errors import ASROutOfMemoryError
from voicebot.events import Transcript

log = logging.getLogger(__name__)


class BatchRecognizer(Protocol):
    """A recognizer that transcribes many clips in one pass (``TorchWhisperASR``)."""

    name: str

    def transcribe_batch(
        self, audios: list[np.ndarray], contexts: list[ASRContext | None] | None = None
    ) -> list[Transcript]: ...


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 64  # clips per forward pass
    window_s: float = 0.01  # how long the first request of an idle engine waits for company
    max_pending: int = 512  # queued requests beyond this drop the oldest partials
    partial_max_wait_s: float = 0.5  # a partial queued longer than this is stale: dropped


@dataclass(eq=False)
class _Request:
    audio: np.ndarray
    final: bool
    call: "CallHandle | None"
    context: ASRContext | None = None
    submitted: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


@dataclass
class EngineStats:
    """Counters for benchmarks and operators."""

    batches: int = 0
    requests: int = 0
    busy_s: float = 0.0  # time spent in forward passes
    dropped_partials: int = 0
    largest_batch: int = 0


class BatchingASR:
    """The ``ASR`` protocol over a shared, batching engine; one per process (or per GPU).

    ``transcribe`` blocks its worker thread until the result is ready and counts as a final;
    ``open_call`` gives a call its own handle, for partials and for dropping its requests
    when it disconnects.
    """

    def __init__(self, model: BatchRecognizer, config: BatchingConfig | None = None) -> None:
        self.name = model.name
        self.model = model
        self.config = config or BatchingConfig()
        self.stats = EngineStats()
        self._finals: deque[_Request] = deque()
        self._partials: deque[_Request] = deque()
        self._lock = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="asr-batching", daemon=True)
        self._worker.start()

    def transcribe(self, audio: np.ndarray, context: ASRContext | None = None) -> Transcript:
        return self.submit(audio, final=True, context=context).result()

    def open_call(self) -> "CallHandle":
        return CallHandle(self)

    def submit(
        self,
        audio: np.ndarray,
        *,
        final: bool,
        call: "CallHandle | None" = None,
        context: ASRContext | None = None,
    ) -> "Future[Transcript]":
        """Queue ``audio``, heard in ``context``; the future resolves to its transcript (or a
        dropped partial). Requests of different contexts still share a batch."""
        request = _Request(audio, final, call, context)
        dropped: list[_Request] = []
        superseded: list[_Request] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the ASR engine is closed")
            if final:
                self._finals.append(request)
            else:
                superseded = self._supersede(call)
                self._partials.append(request)
            while len(self._finals) + len(self._partials) > self.config.max_pending:
                if not self._partials:
                    break  # only finals: they wait (delayed), never dropped
                dropped.append(self._partials.popleft())
            self._lock.notify()
        self._drop(superseded, "superseded")
        self._drop(dropped, "overloaded")
        return request.future

    def close(self) -> None:
        """Stop the worker; requests still queued are cancelled."""
        with self._lock:
            self._closed = True
            queued = [*self._finals, *self._partials]
            self._finals.clear()
            self._partials.clear()
            self._lock.notify()
        for request in queued:  # outside the lock: cancelling runs callbacks
            request.future.cancel()
        self._worker.join(timeout=30)

    def _supersede(self, call: "CallHandle | None") -> list[_Request]:
        """A call's new partial makes its queued older one pointless (lock held)."""
        older = [r for r in self._partials if call is not None and r.call is call]
        for request in older:
            self._partials.remove(request)
        return older

    def _drop(self, requests: list[_Request], reason: str) -> None:
        """Resolve partials unheard: ``dropped`` says why, and no audio was processed.

        Called without the lock held: resolving runs callers' callbacks, which may take
        their own locks (lock order: never the engine's lock, then a call's).
        """
        with self._lock:
            self.stats.dropped_partials += len(requests)
        for request in requests:
            _resolve(request.future, Transcript("", 0.0, 0.0, 0.0, 0.0, dropped=reason))

    def _run(self) -> None:
        while True:
            stale: list[_Request] = []
            with self._lock:
                batch = self._next_batch(stale)
            self._drop(stale, "overloaded")
            if batch is None:
                return
            if batch:
                self._execute(batch)

    def _next_batch(self, stale: list[_Request]) -> list[_Request] | None:
        """Wait for requests, then up to ``max_batch`` of them, finals first (lock held)."""
        while not (self._finals or self._partials or self._closed):
            self._lock.wait()
        if self._closed:
            return None
        oldest = min(q[0].submitted for q in (self._finals, self._partials) if q)
        deadline = oldest + self.config.window_s
        while (
            len(self._finals) + len(self._partials) < self.config.max_batch
            and (left := deadline - time.monotonic()) > 0
            and not self._closed
        ):
            self._lock.wait(left)
        batch: list[_Request] = []
        too_old = time.monotonic() - self.config.partial_max_wait_s
        while self._finals and len(batch) < self.config.max_batch:
            request = self._finals.popleft()
            if not request.future.cancelled():
                batch.append(request)
        while self._partials and len(batch) < self.config.max_batch:
            request = self._partials.popleft()
            if request.future.cancelled():
                continue
            if request.submitted < too_old:
                stale.append(request)  # resolved once the lock is released
            else:
                batch.append(request)
        return batch

    def _execute(self, batch: list[_Request]) -> None:
        """Run one batch; out of memory splits it in two, down to a single request."""
        started = time.perf_counter()
        try:
            results = self.model.transcribe_batch(
                [r.audio for r in batch], [r.context for r in batch]
            )
        except ASROutOfMemoryError as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
                return
            log.warning("ASR batch of %d ran out of memory: splitting it", len(batch))
            half = len(batch) // 2
            self._execute(batch[:half])
            self._execute(batch[half:])
            return
        except Exception as exc:  # reported to each waiting call; the engine keeps serving
            log.exception("ASR batch of %d failed", len(batch))
            self._fail(batch, exc)
            return
        with self._lock:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.busy_s += time.perf_counter() - started
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for request, result in zip(batch, results, strict=True):
            _resolve(request.future, result)

    def _fail(self, batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            _resolve(request.future, exc)


def _resolve(future: Future, outcome: Transcript | BaseException) -> None:
    """Deliver a result or error, unless the call cancelled it (hung up): then it is dropped."""
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:  # cancelled, even between a check and the set
        pass


class CallHandle:
    """One call's door into the engine: submits its requests, cancels them when it hangs up."""

    def __init__(self, engine: BatchingASR) -> None:
        self._engine = engine
        self._pending: set[Future] = set()
        self._guard = threading.Lock()
        self.closed = False

    def submit(
        self, audio: np.ndarray, *, final: bool, context: ASRContext | None = None
    ) -> "Future[Transcript]":
        if self.closed:
            raise RuntimeError("the call has hung up")
        # Not under our lock: the engine's lock is never taken inside a call's (lock order).
        future = self._engine.submit(audio, final=final, call=self, context=context)
        with self._guard:
            if not self.closed:
                self._pending.add(future)
        if self.closed:  # hung up while submitting
            future.cancel()
        future.add_done_callback(self._forget)
        return future

    def close(self) -> None:
        """The caller hung up: its queued and running requests are cancelled."""
        with self._guard:
            self.closed = True
            pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()

    def _forget(self, future: Future) -> None:
        with self._guard:
            self._pending.discard(future)
