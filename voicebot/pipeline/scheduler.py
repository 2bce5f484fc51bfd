"""Runs model compute in worker threads and stamps every result with the call time it is ready.

A result becomes visible to the call at ``start + wall seconds the job took``, where ``start``
is the call time the job was submitted. In a real-time call the call clock *is* the wall
clock, so this is simply "when it arrives". In a fast simulated call the call clock is
advanced by the audio, as fast as the CPU allows: before the call moves past time ``t``,
``collect`` waits (in wall time) until every running job either finished or has been running
for longer than ``t - start``. Audio time then flows at wall speed while a model computes and
races ahead while nothing does, so a simulated call reports the latencies a real-time call
would see, in a fraction of its duration.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from voicebot.pipeline.workers import BACKGROUND, URGENT, PriorityWorkers

# Jobs nobody waits on yield to those a caller does (see voicebot.pipeline.workers), and are
# dropped once they waited this long for a thread: a fresher one will come along.
_BACKGROUND_KINDS = frozenset({"partial"})
_STALE_S = 1.0


@dataclass(frozen=True)
class Completion:
    """One result (or the error) of a job, and the call time it is ready at."""

    job: "Job"
    ready: float
    value: Any = None
    error: BaseException | None = None
    last: bool = False  # the job's final completion (a stream ends with value None)


Clock = Callable[[], float]
"""Where compute time is read: the wall clock (``time.perf_counter``) outside tests."""


class Job:
    """A unit of worker-thread compute; ``tag`` carries whatever the caller needs back."""

    def __init__(
        self, kind: str, start: float, tag: Any = None, clock: Clock = time.perf_counter
    ) -> None:
        self.kind = kind
        self.start = start
        self.tag = tag
        self.cancelled = False
        self.finished = False
        self._clock = clock
        self._wall_start = clock()
        self._results: list[tuple[float, Any, BaseException | None, bool]] = []
        self._delivered = 0
        self._lock = threading.Lock()
        self._changed = asyncio.Event()

    def cancel(self) -> None:
        """Drop the job's results; a streaming job also stops between items."""
        self.cancelled = True

    def elapsed(self) -> float:
        return self._clock() - self._wall_start

    def _push(self, value: Any, error: BaseException | None = None, last: bool = False) -> None:
        with self._lock:
            self._results.append((self.elapsed(), value, error, last))

    def _take(self, until: float) -> list[Completion]:
        with self._lock:
            pending = self._results[self._delivered :]
        out = []
        for elapsed, value, error, last in pending:
            ready = self.start + elapsed
            if ready > until:
                break
            out.append(Completion(self, ready, value, error, last))
        self._delivered += len(out)
        return out

    def _drained(self) -> bool:
        return self.finished and self._delivered == len(self._results)


class Scheduler:
    """Per-call job tracker over a shared executor (see module docstring for the clock).

    ``clock`` measures compute time. Tests of call-clock bookkeeping pass one that they
    advance themselves, so what they assert does not depend on how busy the machine is.
    """

    def __init__(
        self, executor: PriorityWorkers, *, realtime: bool, clock: Clock = time.perf_counter
    ) -> None:
        self.realtime = realtime
        self._clock = clock
        self._executor = executor
        self._jobs: list[Job] = []
        self._loop = asyncio.get_running_loop()

    def _wake(self, job: Job) -> None:
        """Tell the call that ``job`` has news. A job still running when its call ended (a
        speculative final nobody waits for) finds the call's loop closed: nothing to tell,
        and the worker thread must live on for the next call that shares it."""
        try:
            self._loop.call_soon_threadsafe(job._changed.set)
        except RuntimeError:
            if not self._loop.is_closed():
                raise

    def submit(self, kind: str, start: float, fn: Callable[[], Any], tag: Any = None) -> Job:
        """Run ``fn()`` in a worker; its return value is delivered as one completion."""
        return self._start(
            Job(kind, start, tag, self._clock), lambda job: job._push(fn(), last=True)
        )

    def submit_stream(
        self, kind: str, start: float, fn: Callable[[], Iterator[Any]], tag: Any = None
    ) -> Job:
        """Run a generator in a worker; each item is delivered as soon as it is produced."""

        def run(job: Job) -> None:
            for item in fn():
                if job.cancelled:
                    return
                job._push(item)
                self._wake(job)
            job._push(None, last=True)  # end of stream

        return self._start(Job(kind, start, tag, self._clock), run)

    def submit_future(
        self, kind: str, start: float, fn: Callable[[], "Future[Any]"], tag: Any = None
    ) -> Job:
        """Hand work to a component with its own threads (``fn`` returns at once with a
        future); no worker thread waits on it. The result is delivered as for ``submit``."""
        job = Job(kind, start, tag)

        def done(future: "Future[Any]") -> None:
            if future.cancelled():
                job.cancel()
            elif future.exception() is not None:
                job._push(None, future.exception(), last=True)
            else:
                job._push(future.result(), last=True)
            job.finished = True
            self._wake(job)

        self._jobs.append(job)
        fn().add_done_callback(done)
        return job

    def _start(self, job: Job, body: Callable[[Job], None]) -> Job:
        def work() -> None:
            try:
                body(job)
            except BaseException as exc:  # delivered to the call, which decides what to do
                job._push(None, exc, last=True)
            finally:
                job.finished = True
                self._wake(job)

        def skip() -> bool:
            """Asked when a thread is free: is this job still worth computing?"""
            if background and job.elapsed() > _STALE_S:
                job.cancel()
            if job.cancelled:
                job.finished = True  # never ran; nothing will be delivered
            return job.cancelled

        background = job.kind in _BACKGROUND_KINDS
        self._jobs.append(job)
        self._executor.submit(work, BACKGROUND if background else URGENT, skip)
        return job

    @property
    def busy(self) -> bool:
        return any(not j.cancelled and not j._drained() for j in self._jobs)

    async def collect(self, until: float) -> list[Completion]:
        """Results ready by call time ``until``, in ready order; waits for them when simulated."""
        out: list[Completion] = []
        for job in list(self._jobs):
            if not job.cancelled and not self.realtime:
                await self._wait_until(job, until - job.start)
            if job.cancelled:
                self._jobs.remove(job)
                continue
            out.extend(job._take(until))
            if job._drained():
                self._jobs.remove(job)
        out.sort(key=lambda c: c.ready)
        return out

    async def _wait_until(self, job: Job, budget: float) -> None:
        """Wait until ``job`` finished or has computed for ``budget`` seconds of its clock
        (a clock that is not the wall clock can lag the timeout: then look again)."""
        while not job.finished and job.elapsed() < budget:
            job._changed.clear()
            if job.finished:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job._changed.wait(), timeout=budget - job.elapsed())

    def cancel_all(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()
