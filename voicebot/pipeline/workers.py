"""The model-compute thread pool every call of a process shares, with priorities.

With many calls on one machine the CPU is the queue. A plain FIFO pool makes a caller who
just stopped talking wait behind other callers' partial transcripts, which nobody is
waiting for; here work that a caller waits on (final transcripts, replies, speech) runs
first and partials fill the gaps. Work cancelled while queued (a partial overtaken by the
end of the turn) is skipped instead of computed for nothing.
"""

import itertools
import queue
import threading
from collections.abc import Callable

URGENT = 0  # a caller is waiting on it
BACKGROUND = 1  # nice to have (partial transcripts)


class PriorityWorkers:
    """``submit(fn, priority, skip)`` runs ``fn()`` in one of ``count`` threads: lower
    priority value first, first come first served within a priority. ``skip()`` is asked
    just before running; True drops the work."""

    def __init__(self, count: int, name: str = "voicebot") -> None:
        if count < 1:
            raise ValueError("at least one worker thread is needed")
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        fn: Callable[[], None],
        priority: int = URGENT,
        skip: Callable[[], bool] = lambda: False,
    ) -> None:
        if self._closed:
            raise RuntimeError("the worker pool is shut down")
        self._queue.put((priority, next(self._order), fn, skip))

    def pending(self) -> int:
        """Work waiting for a thread (not counting what runs now)."""
        return self._queue.qsize()

    def shutdown(self) -> None:
        """Stop taking work; queued work is dropped, running work finishes on its own."""
        self._closed = True
        for _ in self._threads:
            self._queue.put((-1, next(self._order), None, None))

    def __enter__(self) -> "PriorityWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _run(self) -> None:
        while True:
            _, _, fn, skip = self._queue.get()
            if fn is None:
                return
            if not skip():
                fn()
