"""The batching engine's scheduling, on a fake recognizer: order, overload, hang-ups, OOM."""

import contextlib
import queue
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from voicebot.asr.base import ASRContext
from voicebot.asr.batching import BatchingASR, BatchingConfig
from voicebot.errors import ASROutOfMemoryError
from voicebot.events import Expect, Expectation, Transcript

WAIT_S = 60  # hang guard only: every wait below ends as soon as the engine acts


class FakeRecognizer:
    """Echoes each clip's first sample as its text. While ``gate`` is clear, each batch
    announces itself on ``entered`` and waits for a ``step()`` (or for the gate to open)."""

    name = "fake"

    def __init__(self, *, oom_above: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.contexts: list[list] = []  # each batch's contexts, request by request
        self.entered: queue.Queue[list[int]] = queue.Queue()
        self.gate = threading.Event()
        self.gate.set()
        self._steps = threading.Semaphore(0)
        self.oom_above = oom_above

    def step(self) -> None:
        """Let exactly one held batch finish."""
        self._steps.release()

    def transcribe_batch(self, audios: list[np.ndarray], contexts=None) -> list[Transcript]:
        ids = [int(a[0]) for a in audios]
        self.contexts.append(contexts)
        self.entered.put(ids)
        while not self.gate.is_set() and not self._steps.acquire(timeout=0.01):
            pass
        if self.oom_above is not None and len(audios) > self.oom_above:
            raise ASROutOfMemoryError("fake: out of memory")
        self.batches.append(ids)
        return [Transcript(str(i), -0.1, 0.0, 0.1, 0.0) for i in ids]


def clip(tag: int) -> np.ndarray:
    return np.full(1600, tag, np.float32)


@pytest.fixture
def held():
    """An engine whose model is busy on a first request until ``model.gate`` is set."""
    model = FakeRecognizer()
    engine = BatchingASR(model, BatchingConfig(max_batch=8, window_s=0.001))
    model.gate.clear()
    first = engine.submit(clip(0), final=True)
    assert model.entered.get(timeout=WAIT_S) == [0]
    yield engine, model, first
    model.gate.set()
    engine.close()


def test_results_go_to_their_callers():
    engine = BatchingASR(FakeRecognizer(), BatchingConfig(window_s=0.02))
    futures = [engine.submit(clip(i), final=True) for i in range(10)]
    assert [f.result(WAIT_S).text for f in futures] == [str(i) for i in range(10)]
    assert engine.transcribe(clip(42)).text == "42"
    engine.close()


def test_finals_are_batched_before_partials(held):
    engine, model, first = held
    partials = [engine.submit(clip(i), final=False) for i in (1, 2, 3)]
    finals = [engine.submit(clip(i), final=True) for i in (7, 8)]
    model.gate.set()
    assert first.result(WAIT_S).text == "0"
    assert [f.result(WAIT_S).text for f in finals + partials] == ["7", "8", "1", "2", "3"]
    assert model.batches[1] == [7, 8, 1, 2, 3]


def test_requests_heard_in_different_contexts_share_a_batch(held):
    """A digit question's request and a plain one go to the model together, each with its
    own context (the model groups them by prompt after one encoder pass)."""
    engine, model, _ = held
    digits = ASRContext(Expectation(Expect.DIGITS, digits=5))
    call = engine.open_call()
    asked = call.submit(clip(1), final=True, context=digits)
    plain = engine.submit(clip(2), final=True)
    model.gate.set()
    assert [asked.result(WAIT_S).text, plain.result(WAIT_S).text] == ["1", "2"]
    assert model.batches[1] == [1, 2]
    assert model.contexts[1] == [digits, None]
    assert engine.transcribe(clip(3), digits).text == "3"
    assert model.contexts[-1] == [digits]


def test_overload_drops_the_oldest_partials_never_finals():
    model = FakeRecognizer()
    engine = BatchingASR(model, BatchingConfig(max_batch=2, window_s=0.001, max_pending=3))
    model.gate.clear()
    engine.submit(clip(0), final=True)
    assert model.entered.get(timeout=WAIT_S) == [0]
    partials = [engine.submit(clip(i), final=False) for i in (1, 2, 3)]
    finals = [engine.submit(clip(i), final=True) for i in (4, 5, 6, 7)]
    assert [p.result(WAIT_S).dropped for p in partials] == ["overloaded"] * 3
    model.gate.set()
    assert [f.result(WAIT_S).text for f in finals] == ["4", "5", "6", "7"]  # delayed, all heard
    assert engine.stats.dropped_partials == 3
    engine.close()


def test_stale_partials_are_dropped_and_a_newer_one_replaces_a_queued_one(held):
    engine, model, _ = held
    engine.config = BatchingConfig(max_batch=8, window_s=0.001, partial_max_wait_s=0.05)
    call = engine.open_call()
    older = call.submit(clip(1), final=False)
    newer = call.submit(clip(2), final=False)
    assert older.result(WAIT_S).dropped == "superseded"
    time.sleep(0.1)
    model.gate.set()
    assert newer.result(WAIT_S).dropped == "overloaded"  # waited past partial_max_wait_s


def test_a_hung_up_call_loses_its_requests_and_blocks_nobody(held):
    engine, model, _ = held
    gone, staying = engine.open_call(), engine.open_call()
    queued = gone.submit(clip(1), final=True)
    kept = staying.submit(clip(2), final=True)
    gone.close()
    model.gate.set()
    assert kept.result(WAIT_S).text == "2"
    with pytest.raises(CancelledError):
        queued.result(WAIT_S)
    assert all(1 not in batch for batch in model.batches)  # never computed
    with pytest.raises(RuntimeError, match="hung up"):
        gone.submit(clip(3), final=True)


def test_a_running_request_of_a_hung_up_call_is_discarded(held):
    engine, model, _ = held
    call = engine.open_call()
    other = engine.submit(clip(9), final=True)
    running = call.submit(clip(1), final=True)
    model.step()  # the first batch finishes; the next one takes both requests
    assert model.entered.get(timeout=WAIT_S) == [9, 1]  # now computing, and held there
    call.close()  # the caller hangs up mid-computation
    model.step()
    assert other.result(WAIT_S).text == "9"
    assert model.batches[-1] == [9, 1]  # it was computed...
    with pytest.raises(CancelledError):
        running.result(WAIT_S)  # ...and its result discarded


def test_out_of_memory_splits_the_batch_then_reports_the_single_request():
    model = FakeRecognizer(oom_above=1)
    engine = BatchingASR(model, BatchingConfig(window_s=0.05))
    futures = [engine.submit(clip(i), final=True) for i in range(4)]
    assert [f.result(WAIT_S).text for f in futures] == ["0", "1", "2", "3"]
    assert all(len(b) == 1 for b in model.batches)
    model.oom_above = 0
    with pytest.raises(ASROutOfMemoryError):
        engine.transcribe(clip(5))
    engine.close()


def test_many_calls_under_overload_all_resolve():
    """Callbacks, hang-ups and drops from many threads never deadlock the engine."""
    engine = BatchingASR(
        FakeRecognizer(),
        BatchingConfig(max_batch=4, window_s=0.0005, max_pending=6, partial_max_wait_s=0.001),
    )
    futures, lock = [], threading.Lock()

    def caller(n: int) -> None:
        call = engine.open_call()
        for i in range(30):
            future = call.submit(clip(n), final=i % 3 == 0)
            with lock:
                futures.append(future)
        if n % 2:
            call.close()

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    for future in futures:
        with contextlib.suppress(CancelledError):
            future.result(WAIT_S)  # a result, a dropped partial or a hang-up: never a hang
    engine.close()
