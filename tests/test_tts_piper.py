"""Piper as the caller hears it: the first words start at once, the rest follows sentence by
sentence (real voice model)."""

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
