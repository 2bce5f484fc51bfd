"""Noise and music with no caller speech: does a call open turns or barge in on them?

Issue 16 ("Bad input"): line noise, hold music or a TV must never open a turn or cut the
bot off. Each row plays 60 s of one sound (through a mu-law line, at a fixed level, from
the call's first frame, so it also runs over the greeting) into a real ``Bot`` call (the
default VAD or ``--vad``, tiny.en, the pack's dialog) on the fast call clock, and counts
what the call did with it: turns opened, caller turns the dialog was asked about (a false
turn), barge-ins on the bot, and whether the bot still spoke after its greeting (a call
that stays "in speech" is dead: no re-prompt, no hang-up).

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
from voicebot.pipeline.session import CallConfig
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller
from voicebot.vad import DEFAULT_VAD, VAD_BACKENDS

SOUNDS = (  # (kind, level in dBFS RMS); speech on a phone line is ~-20 to -26 dBFS
    ("white", -35),
    ("hum", -30),
    ("street", -30),
    ("babble", -40),  # a TV in the room, ~15 dB under the caller
    ("babble", -30),  # a crowd as loud as the caller
    ("music", -20),
    ("music", -30),
)


def sound(kind: str, seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of ``kind`` at ``dbfs`` RMS, as a mu-law line delivers it (16 kHz)."""
    n = int(seconds * NARROW_RATE)
    raw = noise_signal(kind, n, np.random.default_rng(seed))
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
    parser.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_BACKENDS)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/noise.json"))
    args = parser.parse_args()
    # The call as configured re-prompts a silent caller and hangs up after ~26 s; the
    # listening call waits out the whole sound, so every second of it could open a turn.
    call = Bot(BotConfig(pack=args.pack, vad=args.vad))
    patient = CallConfig(no_input_timeout_s=args.seconds + 10)
    listening = Bot(BotConfig(pack=args.pack, vad=args.vad, call=patient))
    rows = []
    try:
        for kind, dbfs in SOUNDS:
            audio = sound(kind, args.seconds, dbfs)
            row = {"sound": kind, "dbfs": dbfs, "call": one_call(call, audio)}
            row["listening"] = one_call(listening, audio)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        call.close()
        listening.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"vad": args.vad, "seconds": args.seconds, "rows": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    failed = sum(
        r["listening"]["turns_opened"]
        or r["call"]["turns_opened"]
        or r["call"]["barge_ins"]
        or not r["call"]["bot_spoke_after_greeting"]
        for r in rows
    )
    print(f"{len(rows) - failed}/{len(rows)} sounds opened no turn and left the call alone")


if __name__ == "__main__":
    main()
