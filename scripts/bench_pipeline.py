"""Pipeline benchmark: ASR and TTS speed, and voice-to-voice latency over the example calls.

    .venv/bin/python scripts/bench_pipeline.py [--asr tiny.en base] [--realtime] [--out R.json]

Reports (and writes as JSON):
- ASR real-time factor per model (compute seconds / audio seconds) on caller phrases rendered
  through a phone line, plus the per-utterance latency a final transcript costs;
- TTS real-time factor and time to first audio (first sentence ready) over the pack replies;
- voice-to-voice latency p50/p95 over the bundled example calls (end of caller speech -> first
  bot audio sample), with the breakdown that shows what dominates it.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from voicebot.asr import make_asr
from voicebot.audio.io import load_audio, write_wav_atomic
from voicebot.audio.pcm import float_to_pcm16
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS

ROOT = Path(__file__).resolve().parents[1]
DEMO_CALLER = "+15551230001"  # the demo bank customer the example recordings speak for
PHRASES = [
    "hi I lost my card yesterday",
    "what's my balance",
    "someone used my card for a purchase I did not make and I want my money back",
    "can I speak to a real person please",
    "I was charged twice for the same thing at a restaurant last friday",
    "yes please",
    "when is my next payment due",
    "I'd like to update my address because I moved to a new apartment last month",
]


def caller_clips(tts: PiperTTS, folder: Path) -> list[np.ndarray]:
    """The benchmark's caller phrases, rendered once and reused: Piper samples noise, so
    re-rendering would change the audio (and the figures) between runs."""
    clips = []
    for index, text in enumerate(PHRASES):
        path = folder / f"{index:02d}.wav"
        if not path.exists():
            write_wav_atomic(path, float_to_pcm16(render_caller(text, piper=tts)), 16000)
        clips.append(load_audio(path))
    return clips


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def bench_asr(model: str, clips: list[np.ndarray], repeats: int) -> dict:
    asr = make_asr(model)
    asr.transcribe(clips[0])  # warm-up
    compute, audio, latencies = 0.0, 0.0, []
    for _ in tqdm(range(repeats), desc=f"asr {model}", leave=False):
        for clip in clips:
            result = asr.transcribe(clip)
            compute += result.compute_s
            audio += result.audio_s
            latencies.append(result.compute_s * 1000)
    return {
        "model": model,
        "rtf": compute / audio,
        "utterance_ms_p50": percentile(latencies, 50),
        "utterance_ms_p95": percentile(latencies, 95),
        "utterances": len(latencies),
        "audio_s": audio,
    }


def bench_tts(tts: PiperTTS, texts: list[str]) -> dict:
    list(tts.synthesize("Warm up."))
    first, total_compute, total_audio = [], 0.0, 0.0
    for text in tqdm(texts, desc="tts", leave=False):
        started = time.perf_counter()
        for i, chunk in enumerate(tts.synthesize(text)):
            if i == 0:
                first.append((time.perf_counter() - started) * 1000)
            total_audio += len(chunk.pcm) / 16000
        total_compute += time.perf_counter() - started
    return {
        "rtf": total_compute / total_audio,
        "first_audio_ms_p50": percentile(first, 50),
        "first_audio_ms_p95": percentile(first, 95),
        "replies": len(texts),
    }


def bench_calls(bot: Bot, realtime: bool) -> dict:
    turns = []
    for path in sorted((ROOT / "examples").glob("*.wav")):
        caller = SimulatedCaller(
            [CallerSegment(load_audio(path), Cue.BOT_DONE, 0.3)], realtime=realtime
        )
        record = asyncio.run(
            bot.run_call(caller, realtime=realtime, caller_audio=path.name, caller_id=DEMO_CALLER)
        )
        turns += [
            t.timings
            for t in record.turns
            if t.role == "caller" and "voice_to_voice_ms" in t.timings
        ]
    v2v = [t["voice_to_voice_ms"] for t in turns]

    def stage(a: str, b: str) -> float:
        return statistics.median((t[b] - t[a]) * 1000 for t in turns)

    return {
        "realtime": realtime,
        "turns": len(v2v),
        "voice_to_voice_ms_p50": percentile(v2v, 50),
        "voice_to_voice_ms_p95": percentile(v2v, 95),
        "median_breakdown_ms": {
            "speech_end->endpoint (silence timeout)": stage("speech_end", "endpoint"),
            "endpoint->asr_final": stage("endpoint", "asr_final"),
            "asr_final->reply_ready (dialog)": stage("asr_final", "reply_ready"),
            "reply_ready->first_audio (tts)": stage("reply_ready", "first_audio"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asr", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--realtime", action="store_true", help="also run the calls paced")
    parser.add_argument("--out", type=Path, default=ROOT / "build/bench/pipeline.json")
    args = parser.parse_args()

    tts = PiperTTS()
    clips = caller_clips(tts, args.out.parent / "clips")
    bot = Bot(BotConfig(asr="tiny.en"))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, py{platform.python_version()}",
        "asr": [bench_asr(model, clips, args.repeats) for model in args.asr],
        "tts": bench_tts(tts, [i.response for i in bot.pack.intents.values()]),
        "calls": [bench_calls(bot, realtime=False)]
        + ([bench_calls(bot, realtime=True)] if args.realtime else []),
    }
    bot.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
