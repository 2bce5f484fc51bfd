"""Resampling with soxr: whole buffers for files, a streaming resampler for live transports."""

import math

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
    resampling each chunk on its own would click at every boundary. soxr's streaming
    resampler holds ~100 ms back before it answers, which would delay every caller frame
    (and the barge-in behind it) by that much, so integer ratios (8 <-> 16 <-> 48 kHz) use a
    polyphase FIR with state instead: ~2 ms of delay and 20 ms in, 20 ms out. Other ratios
    fall back to soxr's quick (unbuffered) mode.
    """

    _TAPS_PER_PHASE = 24

    def __init__(self, src_rate: int, dst_rate: int, dtype: str = "int16") -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._dtype = np.dtype(dtype)
        self._up, self._down = _ratio(src_rate, dst_rate)
        self._stream = None
        if src_rate != dst_rate and self._up * self._down != max(self._up, self._down):
            self._stream = soxr.ResampleStream(src_rate, dst_rate, 1, dtype=dtype, quality="QQ")
        elif src_rate != dst_rate:
            # Imported here: scipy.signal takes ~2 s to import, which every `voicebot`
            # command would pay; only live lines' resamplers need it.
            from scipy.signal import firwin, lfilter

            self._lfilter = lfilter
            factor = max(self._up, self._down)
            taps = firwin(self._TAPS_PER_PHASE * factor + 1, 0.9 / factor)
            self._taps = taps * self._up
            self._state = np.zeros(len(taps) - 1)
            self._phase = 0  # decimation: input samples to skip before the next output
            # The filter's group delay, in output samples: dropped at the start and flushed
            # at the end, so the output lines up with the input (as a whole-buffer resample).
            self._delay = (len(taps) - 1) // 2 // self._down
            self._skip = self._delay

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        if self.src_rate == self.dst_rate:
            return chunk
        if self._stream is not None:
            return self._stream.resample_chunk(chunk, last=last)
        out = self._filter(chunk)
        if self._skip:
            dropped = min(self._skip, len(out))
            out, self._skip = out[dropped:], self._skip - dropped
        if last:
            tail = -(-self._delay * self._down // self._up)  # input zeros that flush the delay
            out = np.concatenate([out, self._filter(np.zeros(tail, chunk.dtype))])
        return out

    def _filter(self, chunk: np.ndarray) -> np.ndarray:
        if len(chunk) == 0:
            return chunk.astype(self._dtype)
        x = chunk.astype(np.float64)
        if self._up > 1:
            stuffed = np.zeros(len(x) * self._up)
            stuffed[:: self._up] = x
            x = stuffed
        y, self._state = self._lfilter(self._taps, 1.0, x, zi=self._state)
        if self._down > 1:
            y = y[self._phase :: self._down]
            self._phase = (self._phase - len(x)) % self._down
        if self._dtype == np.int16:
            return np.clip(np.round(y), -32768, 32767).astype(np.int16)
        return y.astype(self._dtype)


def _ratio(src_rate: int, dst_rate: int) -> tuple[int, int]:
    """(up, down) factors in lowest terms."""
    g = math.gcd(src_rate, dst_rate)
    return dst_rate // g, src_rate // g
