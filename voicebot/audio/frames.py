"""The pipeline's one audio format: 16 kHz mono PCM16, cut into 20 ms frames.

20 ms is what telephony (Twilio, RTP) sends and what webrtcvad accepts, so one frame in is
one frame out on every transport.
"""

from collections.abc import Iterator

import numpy as np

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_S = FRAME_MS / 1000


def iter_frames(pcm: np.ndarray) -> Iterator[np.ndarray]:
    """Yield consecutive 20 ms int16 frames; the last one is zero-padded to full length."""
    for start in range(0, len(pcm), FRAME_SAMPLES):
        frame = pcm[start : start + FRAME_SAMPLES]
        if len(frame) < FRAME_SAMPLES:
            frame = np.pad(frame, (0, FRAME_SAMPLES - len(frame)))
        yield frame


def silence(samples: int = FRAME_SAMPLES) -> np.ndarray:
    """A frame (or any length) of digital silence."""
    return np.zeros(samples, dtype=np.int16)
