"""Piper as the caller hears it: the first words start at once, the rest follows sentence by
sentence (real voice model)."""

import subprocess
import sys

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.tts.piper import PiperTTS, trim_leading_silence


def test_trim_keeps_the_onset_and_leaves_silence_alone():
    audio = np.concatenate([np.zeros(2205, np.float32), np.full(100, 0.5, np.float32)])
    trimmed = trim_leading_silence(audio, 22050)
    assert len(trimmed) == 100 + 220  # 10 ms kept before the first loud sample
    silent = np.zeros(1000, np.float32)
    assert trim_leading_silence(silent, 22050) is silent


def test_the_first_piece_of_a_reply_starts_with_the_voice():
    chunks = list(PiperTTS(deterministic=True).synthesize(
        "For your security, what's the five digit ZIP code on your account?"
    ))  # fmt: skip
    assert [c.text for c in chunks] == [
        "For your security,",
        "what's the five digit ZIP code on your account?",
    ]
    first = chunks[0].pcm.astype(np.float64)
    onset = np.flatnonzero(np.abs(first) > 32768 * 10 ** (-50 / 20))[0]
    assert onset <= 0.015 * SAMPLE_RATE  # 10 ms kept (+ resampling); Piper alone: 40-60 ms


def test_sentences_said_before_come_from_memory_but_never_ones_with_digits(monkeypatch):
    tts = PiperTTS(cache_mb=0.25)  # the bot's voice, sampling noise and all
    synthesized: list[str] = []
    model = tts._voice.synthesize

    def counted(sentence, config):
        synthesized.append(sentence)
        return model(sentence, config)

    monkeypatch.setattr(tts._voice, "synthesize", counted)
    greeting = "Thank you for calling Northwind Bank. How can I help you today?"
    once = [c.pcm for c in tts.synthesize(greeting)]
    again = [c.pcm for c in tts.synthesize(greeting)]
    assert synthesized == ["Thank you for calling Northwind Bank.", "How can I help you today?"]
    assert all(a is b for a, b in zip(once, again, strict=True))  # the same audio, no model run
    assert not again[0].flags.writeable  # shared by every call: nobody may change it
    # As a reply's first sentence it is trimmed, later in a reply it is not: two entries.
    [alone] = [c.pcm for c in tts.synthesize("How can I help you today?")]
    assert alone is not once[1] and synthesized[-1] == "How can I help you today?"
    synthesized.clear()
    for _ in range(2):
        list(tts.synthesize("Shall I block the card ending in 4567?"))
    assert synthesized == ["Shall I block the card ending in 4567?"] * 2  # digits: never kept
    # A budget of a quarter MB holds a few sentences: the oldest go first.
    for n in ("one", "two", "three", "four", "five", "six", "seven", "eight"):
        list(tts.synthesize(f"This is sentence number {n} of a long list of sentences."))
    assert tts._cache._used <= 0.25 * 2**20
    synthesized.clear()
    list(tts.synthesize(greeting))
    assert synthesized == ["Thank you for calling Northwind Bank.", "How can I help you today?"]


# Run in a process of its own, its C heap set up as ``voicebot serve`` sets it (a test
# process's heap holds whatever earlier tests left in it).
_SPEAK_AT_ONCE = """
from concurrent.futures import ThreadPoolExecutor
import psutil
from voicebot.server import memory
memory.limit_arenas()
from voicebot.tts.piper import PiperTTS
tts = PiperTTS(cache_mb=0)
lines = ["Thank you for calling Northwind Bank. How can I help you today?",
         "Let me connect you to one of our agents. They'll see everything we've talked about."]
def speak(_=None):
    for line in lines:
        list(tts.synthesize(line))
speak()
memory.give_back()
before = psutil.Process().memory_info().rss
for _ in range(2):
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(speak, range(6)))
speak()
memory.give_back()
print((psutil.Process().memory_info().rss - before) / 2**20)
"""


def test_calls_speaking_at_once_leave_no_memory_behind():
    """Six calls synthesizing together, then one: the process keeps no high-water mark
    (with onnxruntime's arena the same run kept ~400 MB more; voicebot.tts.piper._load)."""
    done = subprocess.run(
        [sys.executable, "-c", _SPEAK_AT_ONCE], capture_output=True, text=True, check=True
    )
    grew = float(done.stdout.split()[-1])
    assert grew < 150, f"RSS grew {grew:.0f} MB"
