"""Benchmark: how many concurrent phone calls one ``voicebot serve`` process carries.

Starts ``voicebot serve`` (real models, no database) on 127.0.0.1, then for each N runs N
concurrent Twilio calls through ``TwilioPeer`` (real-time paced 20 ms mu-law frames, silence
between turns, the bot's audio played from a 60 ms jitter buffer). Each caller waits for
the greeting, says two things, waits for each answer, and hangs up; calls start
``--stagger-s`` apart, so their turns do not all end in the same second (0: lockstep, the
worst case). Per N it reports:

- voice-to-voice p50/p95: the caller's last voiced frame to the first voiced frame of the
  answer the caller hears (jitter buffer included);
- late frames: bot frames the server sent over 60 ms after their caller frame (from
  ``/metrics``), and underruns the callers heard;
- CPU: the server process's CPU time over the wall time (100% = one core), and the whole
  machine's load meanwhile (other processes compete for the same cores).

A load passes with p95 <= 1.5 s and no late frames; the report names the largest N that did.

For one call (N = 1) the report also breaks each answer's caller-heard latency down by
stage (``breakdown``): the VAD's hangover past the caller's last voiced frame
(webrtcvad and the endpointer run offline over the same audio as the server hears it), the
session's own stages from the call record (end-of-turn wait, recognition after it, dialog,
first synthesized audio), and what is left: the line out (send, the caller's jitter buffer).

    .venv/bin/python scripts/bench_load.py --calls 1 2 4 6 --out build/bench/load.json
"""

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from voicebot.audio.frames import FRAME_S, SAMPLE_RATE, iter_frames
from voicebot.audio.pcm import float_to_pcm16, mulaw_decode
from voicebot.audio.resample import resample
from voicebot.events import SpeechEnded
from voicebot.server.twilio_peer import (
    TICK_S,
    VOICED_RMS,
    TwilioPeer,
    caller_frames,
    mulaw_rms,
)
from voicebot.tts.caller_voice import render_caller
from voicebot.tts.piper import PiperTTS
from voicebot.vad import make_vad
from voicebot.vad.endpointer import Endpointer, EndpointerConfig

LINES = ["hi I lost my card yesterday", "what is my account balance"]
P95_LIMIT_S = 1.5
# The server checks Twilio's signatures and guards /metrics, as in production: the peers
# sign their handshake with this token, and the benchmark reads /metrics with its own.
TWILIO_TOKEN = secrets.token_hex(16)
SCRAPE_TOKEN = secrets.token_hex(16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    port: int, asr: str, max_calls: int, workers: int, transcripts: Path
) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "voicebot", "serve", "--port", str(port), "--asr", asr,
        "--max-calls", str(max_calls), "--workers", str(workers), "--no-db",
        "--transcripts", str(transcripts),
    ]  # fmt: skip
    env = os.environ | {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "VOICEBOT_METRICS_TOKEN": SCRAPE_TOKEN}
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
        if server.poll() is not None:
            raise SystemExit(f"voicebot serve exited with {server.returncode}")
    server.kill()
    raise SystemExit("voicebot serve did not come up in 300 s")


def metric(port: int, name: str) -> float:
    auth = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10, headers=auth).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def one_call(url: str, lines: list[np.ndarray], delay_s: float) -> dict:
    await asyncio.sleep(delay_s)
    async with TwilioPeer(url, auth_token=TWILIO_TOKEN) as peer:
        await peer.wait_bot_done(quiet_s=0.8, timeout=60)
        latencies = []
        for audio in lines:
            said = peer.say(audio)
            first = await peer.wait_bot_speaking(after=said.last_voiced + 1, timeout=60)
            latencies.append((first - said.last_voiced) * TICK_S)
            await peer.wait_bot_done(after=first, quiet_s=0.8, timeout=60)
        await peer.stop()
        await peer.wait_closed()
    return {
        "voice_to_voice_s": latencies,
        "underruns": peer.log.underruns,
        "client_late_sends": peer.log.late_sends,
    }


async def load(url: str, n: int, lines: list[np.ndarray], stagger_s: float) -> list[dict]:
    return await asyncio.gather(*(one_call(url, lines, stagger_s * i) for i in range(n)))


def vad_hangover_s(audio: np.ndarray) -> float:
    """How long after the start of the caller's last voiced frame (the peer's measure) the
    server's VAD and endpointer put the end of speech, for ``audio`` as the server hears it
    (mu-law at 8 kHz, back to 16 kHz), with one utterance's silence around it."""
    frames = caller_frames(audio)
    last_voiced = max(i for i, f in enumerate(frames) if mulaw_rms(f) > VOICED_RMS)
    heard = resample(mulaw_decode(b"".join(frames)).astype(np.float32) / 32768, 8000, 16000)
    quiet = np.zeros(SAMPLE_RATE, np.float32)
    pcm = float_to_pcm16(np.concatenate([quiet, heard, quiet, quiet]))
    vad, endpointer = make_vad("webrtc"), Endpointer(EndpointerConfig(silence_timeout_ms=1000))
    end = None
    for index, frame in enumerate(iter_frames(pcm)):
        event = endpointer.push(index * FRAME_S, vad.speech_prob(frame))
        if isinstance(event, SpeechEnded):
            end = event.end
    assert end is not None, "the VAD heard no speech in a benchmark line"
    return end - 1.0 - last_voiced * FRAME_S


def breakdown(record: dict, heard_s: list[float], hangovers: list[float]) -> list[dict]:
    """Each answer's caller-heard latency by stage (ms), from one call's record."""
    answered = [
        t["timings"]
        for t in record["turns"]
        if t["role"] == "caller" and "first_audio" in t.get("timings", {})
    ]
    rows = []
    for heard, hangover, t in zip(heard_s, hangovers, answered, strict=False):
        server = t["first_audio"] - t["speech_end"]
        heard_in = max(t["endpoint"], t["asr_final"])
        stages = {
            "vad_hangover": hangover,
            "end_of_turn_wait": t["endpoint"] - t["speech_end"],
            "asr_after_end_of_turn": heard_in - t["endpoint"],
            "dialog": t["reply_ready"] - heard_in,
            "first_audio": t["first_audio"] - t["reply_ready"],
            "line_out": heard - server - hangover,
        }
        row = {k: round(v * 1000) for k, v in stages.items()}
        rows.append({"caller_heard_ms": round(heard * 1000), **row})
    return rows


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--asr", default="tiny.en")
    parser.add_argument("--workers", type=int, default=2, help="model-compute threads")
    parser.add_argument(
        "--stagger-s", type=float, default=2.5, help="between call starts (0: all in lockstep)"
    )
    parser.add_argument("--out", type=Path, default=Path("build/bench/load.json"))
    args = parser.parse_args()

    tts = PiperTTS(deterministic=True)
    lines = [render_caller(text, voice="piper-low", line="mulaw", piper=tts) for text in LINES]
    port = free_port()
    transcripts = Path(tempfile.mkdtemp(prefix="bench-load-"))
    server = start_server(port, args.asr, max(args.calls), args.workers, transcripts)
    process = psutil.Process(server.pid)
    url = f"ws://127.0.0.1:{port}/twilio/media"
    results = []
    try:
        for n in args.calls:
            late_before = metric(port, "voicebot_late_frames_total")
            cpu_before = sum(process.cpu_times()[:2])
            psutil.cpu_percent()
            wall = time.monotonic()
            records_before = set(transcripts.glob("*.json"))
            calls = asyncio.run(load(url, n, lines, args.stagger_s))
            wall = time.monotonic() - wall
            cpu = (sum(process.cpu_times()[:2]) - cpu_before) / wall
            latencies = [v for c in calls for v in c["voice_to_voice_s"]]
            row = {
                "calls": n,
                "turns": len(latencies),
                "v2v_p50_s": round(percentile(latencies, 50), 3),
                "v2v_p95_s": round(percentile(latencies, 95), 3),
                "v2v_max_s": round(max(latencies), 3),
                "late_frames": int(metric(port, "voicebot_late_frames_total") - late_before),
                "underruns": sum(c["underruns"] for c in calls),
                "client_late_sends": sum(c["client_late_sends"] for c in calls),
                "server_cpu_pct": round(cpu * 100),
                "machine_cpu_pct": round(psutil.cpu_percent()),
                "wall_s": round(wall, 1),
            }
            row["ok"] = row["v2v_p95_s"] <= P95_LIMIT_S and row["late_frames"] == 0
            if n == 1:  # the single call's answers, by stage, from its record
                [path] = set(transcripts.glob("*.json")) - records_before
                hangovers = [vad_hangover_s(audio) for audio in lines]
                record = json.loads(path.read_text())
                row["breakdown"] = breakdown(record, calls[0]["voice_to_voice_s"], hangovers)
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    passing = [r["calls"] for r in results if r["ok"]]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "asr": args.asr,
        "workers": args.workers,
        "stagger_s": args.stagger_s,
        "criteria": f"p95 <= {P95_LIMIT_S} s and no late frames",
        "max_calls_passing": max(passing) if passing else 0,
        "results": results,
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"largest N passing: {report['max_calls_passing']}  (wrote {args.out})")


if __name__ == "__main__":
    main()
