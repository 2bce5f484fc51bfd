"""Noise and music with no caller speech: does a call open turns or barge in on them?

Issue 16 ("Bad input"): line noise, hold music or a TV must never open a turn or cut the
bot off. Each row plays 60 s of one sound (through a mu-law line, at a fixed level, from
the call's first frame, so it also runs over the greeting) into a real ``Bot`` call
(webrtcvad, tiny.en, the pack's dialog) on the fast call clock, and counts what the call
did with it: turns opened, caller turns the dialog was asked about (a false turn), barge-ins
on the bot, and whether the bot still spoke after its greeting (a call that stays "in
speech" is dead: no re-prompt, no hang-up).

    .venv/bin/python scripts/bench_noise.py --out build/bench/noise.json
"""

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from voicebot.audio.resample import resample
from voicebot.audio.telephone import NARROW_RATE, line, noise_signal
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller

SOUNDS = (  # (kind, level in dBFS RMS); speech on a phone line is ~-20 to -26 dBFS
    ("white", -35),
    ("hum", -30),
    ("street", -30),
    ("babble", -30),
    ("music", -20),
    ("music", -30),
)


def hold_music(n: int) -> np.ndarray:
    """Plucked piano-like chords (C G Am F) under a melody, half a second a note: tonal,
    rhythmic and in the voice band, as hold music is (8 kHz)."""
    chords = [
        [261.6, 329.6, 392.0],
        [196.0, 246.9, 293.7],
        [220.0, 261.6, 329.6],
        [174.6, 220.0, 261.6],
    ]
    melody = [523.3, 587.3, 659.3, 784.0, 659.3, 587.3, 523.3, 493.9]
    out, beat = np.zeros(n), int(0.5 * NARROW_RATE)
    for index, start in enumerate(range(0, n, beat)):
        length = min(int(1.8 * beat), n - start)
        t = np.arange(length) / NARROW_RATE
        for freq in [*chords[(index // 4) % 4], melody[index % 8]]:
            for harmonic in range(1, 5):
                out[start : start + length] += (
                    np.exp(-3 * t) * np.sin(2 * np.pi * freq * harmonic * t) / harmonic**1.5
                )
    return out.astype(np.float32)


def sound(kind: str, seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of ``kind`` at ``dbfs`` RMS, as a mu-law line delivers it (16 kHz)."""
    n = int(seconds * NARROW_RATE)
    raw = hold_music(n) if kind == "music" else noise_signal(kind, n, np.random.default_rng(seed))
    rms = float(np.sqrt(np.mean(raw.astype(np.float64) ** 2))) or 1.0
    narrow = np.clip(raw / rms * 10 ** (dbfs / 20), -1, 1).astype(np.float32)
    return line("mulaw").apply(resample(narrow, NARROW_RATE, 16000))


def one_call(bot: Bot, audio: np.ndarray) -> dict:
    opened = 0

    def observe(kind: str, event: object) -> None:
        nonlocal opened
        opened += kind == "speech_started"

    caller = SimulatedCaller([CallerSegment(audio, Cue.CALL_START, 0.0)], tail_s=1.0)
    record = asyncio.run(bot.run_call(caller, realtime=False, observer=observe))
    callers = [t for t in record.turns if t.role == "caller"]
    bot_turns = [t for t in record.turns if t.role == "bot"]
    return {
        "call_s": record.duration_s,
        "ended_by": record.ended_by,
        "turns_opened": opened,
        "false_turns": sum(t.heard != "silence" for t in callers),
        "caller_turns_heard_as_silence": sum(t.heard == "silence" for t in callers),
        "barge_ins": len(record.barge_ins),
        "greeting_cut": bool(bot_turns and bot_turns[0].interrupted),
        "bot_spoke_after_greeting": len(bot_turns) > 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="bank")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/noise.json"))
    args = parser.parse_args()
    bot = Bot(BotConfig(pack=args.pack))
    rows = []
    try:
        for kind, dbfs in SOUNDS:
            row = {"sound": kind, "dbfs": dbfs} | one_call(bot, sound(kind, args.seconds, dbfs))
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        bot.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seconds": args.seconds, "rows": rows}, indent=2) + "\n")
    failed = sum(
        r["false_turns"] or r["barge_ins"] or not r["bot_spoke_after_greeting"] for r in rows
    )
    print(f"{len(rows) - failed}/{len(rows)} sounds left the call alone")


if __name__ == "__main__":
    main()
