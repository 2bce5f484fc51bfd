import asyncio
import threading
import time

import pytest

from voicebot.pipeline.scheduler import Scheduler
from voicebot.pipeline.workers import PriorityWorkers


def run(coro):
    return asyncio.run(coro)


class ComputeClock:
    """A compute clock the test's job advances itself: 0.3 s of 'compute' is exactly 0.3 s,
    however busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def compute(self, seconds: float, value: object) -> object:
        self.now += seconds
        return value


def test_simulated_clock_charges_compute_time():
    clock = ComputeClock()

    async def main():
        with PriorityWorkers(2) as pool:
            jobs = Scheduler(pool, realtime=False, clock=clock)
            jobs.submit("slow", 1.0, lambda: clock.compute(0.3, "done"))
            before = await jobs.collect(1.2)  # only 0.2 s of call time has passed
            after = await jobs.collect(1.4)
            return before, after

    before, after = run(main())
    assert before == []
    (completion,) = after
    assert completion.value == "done" and completion.last
    assert completion.ready == pytest.approx(1.3)


def test_simulated_clock_waits_for_a_job_still_computing():
    """Before moving past a time, the simulated call waits for work that may finish by then:
    a job that computes only once the test lets it is still delivered, at its compute time."""
    clock, go = ComputeClock(), threading.Event()

    def slow():
        go.wait()
        return clock.compute(0.1, "late")

    async def main():
        with PriorityWorkers(1) as pool:
            jobs = Scheduler(pool, realtime=False, clock=clock)
            jobs.submit("slow", 0.0, slow)
            asyncio.get_running_loop().call_soon(go.set)  # once collect is waiting
            return await jobs.collect(1.0)

    (completion,) = run(main())
    assert completion.value == "late" and completion.ready == pytest.approx(0.1)


def test_stream_items_are_stamped_one_by_one():
    clock = ComputeClock()

    def produce():
        for i in range(3):
            yield clock.compute(0.1, i)

    async def main():
        with PriorityWorkers(2) as pool:
            jobs = Scheduler(pool, realtime=False, clock=clock)
            jobs.submit_stream("tts", 0.0, produce)
            return await jobs.collect(10.0)

    items = run(main())
    assert [c.value for c in items] == [0, 1, 2, None]  # None: end of stream
    assert [c.last for c in items] == [False, False, False, True]
    assert [c.ready for c in items] == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_stream_end_is_delivered_even_when_the_last_item_was_taken_before_it():
    """Regression: the last item and the end of the stream are separate completions, so a
    collect that takes the last item before the worker marks the job finished still sees
    the end later (a stuck playout waited for it forever)."""
    release = threading.Event()

    def produce():
        yield "only"
        release.wait(1.0)

    async def main():
        with PriorityWorkers(1) as pool:
            jobs = Scheduler(pool, realtime=True)
            jobs.submit_stream("tts", 0.0, produce)
            first = []
            while not first:
                await asyncio.sleep(0.01)
                first = await jobs.collect(100.0)
            release.set()
            rest = []
            while not rest:
                await asyncio.sleep(0.01)
                rest = await jobs.collect(100.0)
            return first, rest

    first, rest = run(main())
    assert [(c.value, c.last) for c in first] == [("only", False)]
    assert [(c.value, c.last) for c in rest] == [(None, True)]


def test_cancelled_jobs_deliver_nothing_and_errors_are_delivered():
    async def main():
        with PriorityWorkers(2) as pool:
            jobs = Scheduler(pool, realtime=False)
            job = jobs.submit("x", 0.0, lambda: time.sleep(0.05) or 1)
            job.cancel()
            jobs.submit("bad", 0.0, lambda: 1 / 0)
            return await jobs.collect(1.0)

    (completion,) = run(main())
    assert isinstance(completion.error, ZeroDivisionError)


def test_realtime_collect_never_waits():
    """A real-time call takes what is ready and moves on: the job below finishes only after
    ``collect`` returned (had collect waited for it, it would have got its result)."""
    release = threading.Event()

    async def main():
        with PriorityWorkers(1) as pool:
            jobs = Scheduler(pool, realtime=True)
            job = jobs.submit("slow", 0.0, lambda: release.wait(30))
            got = await jobs.collect(100.0)
            still_running = not job.finished
            release.set()
            return got, still_running

    got, still_running = run(main())
    assert got == [] and still_running


@pytest.mark.parametrize("realtime", [False, True])
def test_busy_reflects_outstanding_work(realtime):
    release = threading.Event()

    async def main():
        with PriorityWorkers(1) as pool:
            jobs = Scheduler(pool, realtime=realtime)
            job = jobs.submit("x", 0.0, release.wait)
            busy_before = jobs.busy
            release.set()
            while not job.finished:
                await asyncio.sleep(0.01)
            await jobs.collect(1e6)
            return busy_before, jobs.busy

    assert run(main()) == (True, False)


def test_urgent_work_overtakes_background_work_and_cancelled_work_is_skipped():
    from voicebot.pipeline.workers import BACKGROUND, URGENT

    ran, gate, done = [], threading.Event(), threading.Event()
    with PriorityWorkers(1) as pool:
        pool.submit(gate.wait)  # hold the only thread while the queue fills
        pool.submit(lambda: ran.append("partial 1"), BACKGROUND)
        pool.submit(lambda: ran.append("stale partial"), BACKGROUND, skip=lambda: True)
        pool.submit(lambda: ran.append("final"), URGENT)
        pool.submit(lambda: ran.append("reply"), URGENT)
        pool.submit(done.set, BACKGROUND)
        while pool.pending() > 5:  # until the thread takes the gate
            time.sleep(0.01)
        assert pool.pending() == 5
        gate.set()
        assert done.wait(5)
    assert ran == ["final", "reply", "partial 1"]
