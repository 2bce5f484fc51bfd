"""Resampling with soxr: whole buffers for files, a streaming resampler for live transports."""

import numpy as np
import soxr


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole float32 (or int16) mono buffer; returns the same dtype."""
    if src_rate == dst_rate or len(audio) == 0:
        return audio
    return soxr.resample(audio, src_rate, dst_rate, quality="HQ")


class StreamResampler:
    """Chunk-by-chunk resampler for audio arriving in frames (keeps filter state between calls).

    Live transports receive 8 kHz (telephone) or 48 kHz (browser) audio in small chunks;
    resampling each chunk on its own would click at every boundary.
    """

    def __init__(self, src_rate: int, dst_rate: int, dtype: str = "int16") -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream = (
            None
            if src_rate == dst_rate
            else soxr.ResampleStream(src_rate, dst_rate, 1, dtype=dtype, quality="HQ")
        )

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk, last=last)
