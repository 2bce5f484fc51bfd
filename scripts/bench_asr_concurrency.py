"""ASR concurrency benchmark: how many real-time callers one recognizer serves at p95 <= 300 ms.

    .venv/bin/python scripts/bench_asr_concurrency.py --model base --calls 50 100 200 \
        [--baseline-calls 5 10 20] [--baseline faster-whisper|torch] [--device auto] \
        [--seconds 15] [--clips eval/asr/speech-phone.jsonl] [--save-clips clips.npz] \
        [--out build/bench/asr_concurrency.json]

N simulated callers speak real recorded speech (the ASR eval's phone-line manifest by
default: read, spontaneous and disfluent clips, 1-14 s, through 8 kHz mu-law; or an .npz
written by ``--save-clips``, for a machine without the audio libraries) in real time,
each starting at a different clip, staggered over the first 3 s, with 1 to 2.5 s pauses
between utterances (the bot's turn). While a caller speaks it asks for a partial transcript
every second (one in flight per call, as the pipeline does); when it stops it asks for the
final. Reported for each N: p50/p95 latency from end of speech to final transcript, partial
updates per second of speech, engine busy share, GPU and CPU utilisation, and whether it
keeps up (final p95 <= 300 ms and at least one partial per 2 s of speech).

The same measurement runs for the usual design, one recognizer per call with unbatched
requests (sequential within a call, concurrent across calls): ``faster-whisper`` gives each
call its own CTranslate2 model (1 thread each); ``torch`` gives each call its own
``TorchWhisperASR`` (own weights, own CUDA graphs, batch 1), as LiveKit Agents or Pipecat
would run one Whisper per call on a GPU.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicebot.asr.base import ASR  # noqa: E402
from voicebot.asr.batching import BatchingASR, BatchingConfig  # noqa: E402
from voicebot.asr.torch_whisper import WHISPER_RATE, TorchWhisperASR  # noqa: E402

TARGET_P95_S = 0.3
PARTIAL_EVERY_S = 1.0
STAGGER_S = 3.0
PAUSE_S = (1.0, 2.5)


def load_clips(path: Path) -> list[np.ndarray]:
    """Float32 16 kHz clips from an ASR manifest (JSONL, the eval format) or an .npz."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            return [data[name].astype(np.float32) for name in data.files]
    from voicebot.audio.io import load_audio
    from voicebot.eval.manifest import read_jsonl

    entries, issues = read_jsonl(path, ("audio", "text"))
    if issues:
        raise SystemExit(f"{path}: {issues[0]}")
    return [load_audio(path.parent / e.data["audio"]) for e in entries]


class PerCallRecognizers:
    """The usual design: each call its own recognizer and worker, requests unbatched."""

    def __init__(self, make: Callable[[int], ASR], calls: int) -> None:
        self._models = [make(i) for i in range(calls)]
        self._workers = [ThreadPoolExecutor(1) for _ in range(calls)]

    def submit(self, call: int, audio: np.ndarray, final: bool) -> Future:
        return self._workers[call].submit(self._models[call].transcribe, audio)

    def close(self) -> None:
        for worker in self._workers:
            worker.shutdown(cancel_futures=True)


class SharedEngine:
    """Every call submits to one batching engine (what voicebot does)."""

    def __init__(self, engine: BatchingASR, calls: int) -> None:
        self._handles = [engine.open_call() for _ in range(calls)]

    def submit(self, call: int, audio: np.ndarray, final: bool) -> Future:
        return self._handles[call].submit(audio, final=final)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()


async def caller(index: int, recognizer, clips, end: float, rng: random.Random, out: dict):
    """One real-time caller: utterances with partials while speaking, a final at the end."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rng.uniform(0, STAGGER_S))
    turn = index
    while loop.time() < end:
        clip = clips[turn % len(clips)]
        turn += 1
        start, length = loop.time(), len(clip) / WHISPER_RATE
        inflight: Future | None = None
        heard = 0.0
        while heard + PARTIAL_EVERY_S < length:
            heard += PARTIAL_EVERY_S
            await asyncio.sleep(max(0.0, start + heard - loop.time()))
            if inflight is None or inflight.done():
                _count_partial(inflight, out)
                audio = clip[: int(heard * WHISPER_RATE)]
                inflight = recognizer.submit(index, audio, False)
        await asyncio.sleep(max(0.0, start + length - loop.time()))
        spoken_end = loop.time()
        result = await asyncio.wrap_future(recognizer.submit(index, clip, True))
        out["latency"].append(loop.time() - spoken_end)
        out["speech_s"] += length
        out["empty"] += not result.text
        _count_partial(inflight, out)
        await asyncio.sleep(rng.uniform(*PAUSE_S))


def _count_partial(future: Future | None, out: dict) -> None:
    finished = future is not None and future.done() and not future.cancelled()
    if finished and future.exception() is None and future.result().dropped != "overloaded":
        out["partials"] += 1


class Utilisation:
    """Samples GPU utilisation (NVML, when there) and this process's CPU share while running."""

    def __init__(self) -> None:
        self.gpu: list[float] = []
        self._stop = threading.Event()
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import torch

        while not self._stop.wait(0.5):
            try:
                self.gpu.append(float(torch.cuda.utilization()))
            except Exception:  # no GPU, or no NVML: reported as null
                return

    def stop(self) -> dict:
        self._stop.set()
        wall = time.perf_counter() - self._wall0
        cpu = (time.process_time() - self._cpu0) / wall / (os.cpu_count() or 1)
        return {
            "gpu_util_pct": round(float(np.mean(self.gpu)), 1) if self.gpu else None,
            "cpu_util_pct": round(100 * cpu, 1),
        }


def run_level(recognizer, calls: int, clips, seconds: float, busy=None) -> dict:
    """N callers for ``seconds``; the figures of that run."""
    out = {"latency": [], "partials": 0, "speech_s": 0.0, "empty": 0}
    usage = Utilisation()
    busy0 = busy() if busy else 0.0

    async def main() -> None:
        end = asyncio.get_running_loop().time() + seconds
        rngs = [random.Random(i) for i in range(calls)]
        await asyncio.gather(
            *(caller(i, recognizer, clips, end, rngs[i], out) for i in range(calls))
        )

    started = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - started
    latency_ms = np.array(out["latency"]) * 1000
    p95 = float(np.percentile(latency_ms, 95)) if len(latency_ms) else float("nan")
    rate = out["partials"] / out["speech_s"] if out["speech_s"] else 0.0
    row = {
        "calls": calls,
        "finals": len(latency_ms),
        "final_ms_p50": round(float(np.percentile(latency_ms, 50)), 1),
        "final_ms_p95": round(p95, 1),
        "partials_per_speech_s": round(rate, 2),
        "empty_finals": out["empty"],
        "engine_busy_pct": round(100 * (busy() - busy0) / wall, 1) if busy else None,
        **usage.stop(),
        "keeps_up": bool(p95 <= TARGET_P95_S * 1000 and rate >= 0.5),
    }
    print(json.dumps(row), flush=True)
    return row


def sweep(levels, make_recognizer, clips, seconds, busy=None) -> list[dict]:
    """Run each N in order; stop after two levels in a row that do not keep up."""
    rows, misses = [], 0
    for calls in levels:
        recognizer = make_recognizer(calls)
        try:
            rows.append(run_level(recognizer, calls, clips, seconds, busy))
        finally:
            recognizer.close()
        misses = 0 if rows[-1]["keeps_up"] else misses + 1
        if misses == 2:
            break
    return rows


def largest_ok(rows: list[dict]) -> int:
    return max((r["calls"] for r in rows if r["keeps_up"]), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--calls", type=int, nargs="+", default=[25, 50, 100, 150, 200, 250, 300])
    parser.add_argument("--baseline", choices=("faster-whisper", "torch", "none"), default="torch")
    parser.add_argument("--baseline-calls", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each level")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument(
        "--clips", type=Path, default=ROOT / "eval/asr/speech-phone.jsonl", help=".jsonl or .npz"
    )
    parser.add_argument("--save-clips", type=Path, help="also write the clips as this .npz")
    parser.add_argument("--out", type=Path, default=ROOT / "build/bench/asr_concurrency.json")
    args = parser.parse_args()

    clips = load_clips(args.clips)
    if args.save_clips:
        args.save_clips.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.save_clips, *clips)
    model = TorchWhisperASR(
        args.model, device=args.device, dtype=args.dtype, max_batch=args.max_batch
    )
    for size in (1, 8, args.max_batch):  # kernels selected and memory pooled before timing
        model.transcribe_batch([clips[i % len(clips)] for i in range(size)])
    engine = BatchingASR(
        model, BatchingConfig(max_batch=args.max_batch, window_s=args.window_ms / 1000)
    )
    print(f"engine: {args.model} on {model.device} ({model.dtype})", flush=True)
    engine_rows = sweep(
        args.calls,
        lambda n: SharedEngine(engine, n),
        clips,
        args.seconds,
        busy=lambda: engine.stats.busy_s,
    )
    engine.close()
    baseline_rows: list[dict] = []
    if args.baseline != "none":
        print(f"baseline: one {args.baseline} recognizer per call", flush=True)
        baseline_rows = sweep(args.baseline_calls, _baseline(args), clips, args.seconds)
    device_name = (
        __import__("torch").cuda.get_device_name() if model.device.type == "cuda" else "CPU"
    )
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "machine": f"{device_name}; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"py{platform.python_version()}, torch {__import__('torch').__version__}",
        "model": args.model,
        "device": str(model.device),
        "dtype": str(model.dtype),
        "engine": engine_rows,
        "baseline": {"kind": args.baseline, "rows": baseline_rows},
        "largest_calls_p95_ok": {
            "engine": largest_ok(engine_rows),
            "baseline": largest_ok(baseline_rows),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["largest_calls_p95_ok"]), flush=True)


def _baseline(args: argparse.Namespace):
    """A factory of per-call recognizers for the chosen baseline."""
    if args.baseline == "torch":

        def own_model(i: int) -> TorchWhisperASR:
            return TorchWhisperASR(args.model, device=args.device, dtype=args.dtype, max_batch=1)

        return lambda n: PerCallRecognizers(own_model, n)

    def per_call(n: int) -> PerCallRecognizers:
        from voicebot.asr.faster_whisper import FasterWhisperASR

        return PerCallRecognizers(lambda i: FasterWhisperASR(args.model, cpu_threads=1), n)

    return per_call


if __name__ == "__main__":
    main()
