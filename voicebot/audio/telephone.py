"""A telephone channel for simulated callers: band-limit to 8 kHz and pass through G.711.

Callers reach a contact center over the phone network, so test and eval audio goes through
the same narrow band and codec the bot will hear in production.
"""

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import (
    alaw_decode,
    alaw_encode,
    float_to_pcm16,
    mulaw_decode,
    mulaw_encode,
    pcm16_to_float,
)
from voicebot.audio.resample import resample

CODECS = ("mulaw", "alaw", "none")


def telephone_channel(
    audio: np.ndarray,
    *,
    rate: int = SAMPLE_RATE,
    codec: str = "mulaw",
    snr_db: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Return ``audio`` as it sounds after an 8 kHz phone line, back at ``rate``.

    ``snr_db`` adds white noise at that signal-to-noise ratio (over the voiced level).
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    narrow = resample(audio.astype(np.float32), rate, 8000)
    if snr_db is not None:
        level = np.sqrt(np.mean(narrow**2)) or 1e-4
        noise = np.random.default_rng(seed).normal(0.0, level / 10 ** (snr_db / 20), len(narrow))
        narrow = narrow + noise.astype(np.float32)
    pcm = float_to_pcm16(narrow)
    if codec == "mulaw":
        pcm = mulaw_decode(mulaw_encode(pcm))
    elif codec == "alaw":
        pcm = alaw_decode(alaw_encode(pcm))
    return resample(pcm16_to_float(pcm), 8000, rate)
