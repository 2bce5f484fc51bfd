"""Keypad tones in the caller's audio (in-band DTMF), for lines that send no keypad events.

A SIP trunk without RFC 4733 events, a recording, or a phone that plays its tones into the
call: the digits arrive as sound. The recognizer hears nothing it can write down, so without
this a caller typing the ZIP code would be a caller saying nothing. The detector runs the
Goertzel filter for the eight DTMF frequencies over each 20 ms frame (no DTMF library on PyPI
is maintained, and this is twenty lines of numpy); a key is a strong low tone plus a strong
high tone that carry most of the frame's energy for two frames in a row (40 ms, the shortest
key ITU-T Q.24 requires to be accepted).
"""

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE

LOW_HZ = (697, 770, 852, 941)
HIGH_HZ = (1209, 1336, 1477, 1633)
KEYS = ("123A", "456B", "789C", "*0#D")  # KEYS[low][high]
_MIN_SHARE = 0.6  # the two tones hold this much of the frame's energy (speech is broadband)
_MIN_RMS = 200.0  # PCM16: quieter than this is line noise
_MAX_TWIST = 8.0  # the louder tone at most this many times the quieter one (power)
_DOMINANCE = 4.0  # each tone this many times stronger than the next one of its group
_CONFIRM_FRAMES = 2


def _goertzel(frame: np.ndarray, freqs: tuple[int, ...]) -> np.ndarray:
    """Power of ``frame`` at each frequency (the DFT bin nearest it)."""
    n = len(frame)
    t = np.arange(n)
    return np.array(
        [abs(np.dot(frame, np.exp(-2j * np.pi * f * t / SAMPLE_RATE))) ** 2 / n for f in freqs]
    )


def frame_key(pcm: np.ndarray) -> str | None:
    """The keypad key sounding in one 20 ms frame of 16 kHz PCM16, or None."""
    frame = pcm.astype(np.float64)
    energy = float(np.dot(frame, frame))
    if energy / len(frame) < _MIN_RMS**2:
        return None
    low, high = _goertzel(frame, LOW_HZ), _goertzel(frame, HIGH_HZ)
    li, hi = int(np.argmax(low)), int(np.argmax(high))
    lo_p, hi_p = low[li], high[hi]
    if np.sort(low)[-2] * _DOMINANCE > lo_p or np.sort(high)[-2] * _DOMINANCE > hi_p:
        return None
    if max(lo_p, hi_p) > _MAX_TWIST * min(lo_p, hi_p):
        return None
    # A pure tone's Goertzel power over n samples is (amplitude^2 n / 4); the frame's energy
    # is (amplitude^2 n / 2): the two tones' share is 2 (low + high) / energy.
    if 2 * (lo_p + hi_p) < _MIN_SHARE * energy:
        return None
    return KEYS[li][hi]


class DtmfDetector:
    """Keys from a stream of 20 ms frames: each press reported once, when confirmed."""

    def __init__(self) -> None:
        self._candidate: str | None = None
        self._run = 0
        self._held: str | None = None  # the key reported and still sounding
        self.tone = False  # the last frame carried a key's tones (not speech, not silence)

    def push(self, pcm: np.ndarray) -> str | None:
        """Feed one frame; returns a key the moment its press is confirmed."""
        key = frame_key(pcm)
        self.tone = key is not None
        if key is None or key != self._candidate:
            self._candidate, self._run = key, 1 if key else 0
            if key is None:
                self._held = None
            return None
        self._run += 1
        if self._run >= _CONFIRM_FRAMES and self._held != key:
            self._held = key
            return key
        return None
