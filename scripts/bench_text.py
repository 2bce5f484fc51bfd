"""Benchmark: the text stages on hostile input (long runaway transcripts, emoji, noise).

The slot parsers and the intent classifier run inside the call loop's worker jobs, so a
runaway transcript must not stall a call. Goal: every parser, and the classifier, under
1 s on each input below (10,000 characters), on the project's 2-core machine.

    .venv/bin/python scripts/bench_text.py
"""

import os
import sys
import time
from datetime import date

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from voicebot.dialog.cli import load_classifier
from voicebot.dialog.slots import SLOT_TYPES, parse_slot

GOAL_S = 1.0
INPUTS = {
    "letters": "x" * 10_000,
    "digit words": "four " * 2_000,
    "scales": "one hundred " * 833,
    "repeats": "double " * 1_400,
    "one numeral": "9" * 10_000,
    "commas": "1," * 5_000,
    "money": "$" + "1,000" * 2_000,
    "ordinals": "the 3rd " * 1_250,
    "yes and no": "yes no " * 1_428,
    "articles": "in a in a " * 1_000,
    "card pairs": "forty five sixty seven " * 434,
    "emoji": "😀" * 10_000,
}


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    _, classifier = load_classifier("bank")
    today = date(2026, 12, 1)
    slow = 0
    print(f"{'input':<12} {'parsers (all types) s':>22} {'classifier s':>13}")
    for name, text in INPUTS.items():
        parsers = timed(lambda t=text: [parse_slot(k, t, today=today) for k in SLOT_TYPES])
        classify = timed(lambda t=text: classifier.classify(t))
        slow += parsers > GOAL_S or classify > GOAL_S
        print(f"{name:<12} {parsers:>22.3f} {classify:>13.3f}")
    print(f"goal: each under {GOAL_S:g} s; {slow} input(s) over it")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
