"""The batching engine's scheduling, on a fake recognizer: order, overload, hang-ups, OOM."""

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from voicebot.asr.batching import BatchingASR, BatchingConfig
from voicebot.errors import ASROutOfMemoryError
from voicebot.events import Transcript


class FakeRecognizer:
    """Echoes each clip's first sample as its text; can hold a batch until released."""

    name = "fake"

    def __init__(self, *, oom_above: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.oom_above = oom_above

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[Transcript]:
        self.started.set()
        self.gate.wait(5)
        if self.oom_above is not None and len(audios) > self.oom_above:
            raise ASROutOfMemoryError("fake: out of memory")
        ids = [int(a[0]) for a in audios]
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
    assert model.started.wait(5)
    yield engine, model, first
    model.gate.set()
    engine.close()


def test_results_go_to_their_callers():
    engine = BatchingASR(FakeRecognizer(), BatchingConfig(window_s=0.02))
    futures = [engine.submit(clip(i), final=True) for i in range(10)]
    assert [f.result(5).text for f in futures] == [str(i) for i in range(10)]
    assert engine.transcribe(clip(42)).text == "42"
    engine.close()


def test_finals_are_batched_before_partials(held):
    engine, model, first = held
    partials = [engine.submit(clip(i), final=False) for i in (1, 2, 3)]
    finals = [engine.submit(clip(i), final=True) for i in (7, 8)]
    model.gate.set()
    assert first.result(5).text == "0"
    assert [f.result(5).text for f in finals + partials] == ["7", "8", "1", "2", "3"]
    assert model.batches[1] == [7, 8, 1, 2, 3]


def test_overload_drops_the_oldest_partials_never_finals():
    model = FakeRecognizer()
    engine = BatchingASR(model, BatchingConfig(max_batch=2, window_s=0.001, max_pending=3))
    model.gate.clear()
    engine.submit(clip(0), final=True)
    assert model.started.wait(5)
    partials = [engine.submit(clip(i), final=False) for i in (1, 2, 3)]
    finals = [engine.submit(clip(i), final=True) for i in (4, 5, 6, 7)]
    assert [p.result(5).dropped for p in partials] == ["overloaded"] * 3
    model.gate.set()
    assert [f.result(5).text for f in finals] == ["4", "5", "6", "7"]  # delayed, all heard
    assert engine.stats.dropped_partials == 3
    engine.close()


def test_stale_partials_are_dropped_and_a_newer_one_replaces_a_queued_one(held):
    engine, model, _ = held
    engine.config = BatchingConfig(max_batch=8, window_s=0.001, partial_max_wait_s=0.05)
    call = engine.open_call()
    older = call.submit(clip(1), final=False)
    newer = call.submit(clip(2), final=False)
    assert older.result(5).dropped == "superseded"
    time.sleep(0.1)
    model.gate.set()
    assert newer.result(5).dropped == "overloaded"  # waited past partial_max_wait_s


def test_a_hung_up_call_loses_its_requests_and_blocks_nobody(held):
    engine, model, _ = held
    gone, staying = engine.open_call(), engine.open_call()
    queued = gone.submit(clip(1), final=True)
    kept = staying.submit(clip(2), final=True)
    gone.close()
    model.gate.set()
    assert kept.result(5).text == "2"
    with pytest.raises(CancelledError):
        queued.result(5)
    assert all(1 not in batch for batch in model.batches)  # never computed
    with pytest.raises(RuntimeError, match="hung up"):
        gone.submit(clip(3), final=True)


def test_a_running_request_of_a_hung_up_call_is_discarded(held):
    engine, model, _ = held
    call = engine.open_call()
    model.gate.clear()
    model.started.clear()
    engine.submit(clip(9), final=True)  # keeps the model busy with a second batch
    running = call.submit(clip(1), final=True)
    model.gate.set()
    model.gate.clear()
    call.close()
    model.gate.set()
    with pytest.raises(CancelledError):
        running.result(5)


def test_out_of_memory_splits_the_batch_then_reports_the_single_request():
    model = FakeRecognizer(oom_above=1)
    engine = BatchingASR(model, BatchingConfig(window_s=0.05))
    futures = [engine.submit(clip(i), final=True) for i in range(4)]
    assert [f.result(5).text for f in futures] == ["0", "1", "2", "3"]
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
        thread.join(10)
    deadline = time.monotonic() + 10
    while not all(f.done() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(f.done() for f in futures)
    engine.close()
