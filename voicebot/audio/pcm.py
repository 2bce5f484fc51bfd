"""Sample-format conversions and G.711 telephone codecs, in plain numpy.

``audioop`` is gone from Python 3.13, so the mu-law/A-law codecs are implemented here
(ITU-T G.711, the same tables Twilio and RTP PCMU/PCMA use).
"""

import numpy as np

_MULAW_BIAS = 0x21
_MULAW_CLIP = 8159


def float_to_pcm16(audio: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> int16, clipping instead of wrapping around."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


SILENCE_DBFS = -100.0  # the level given to digital silence (whose log is minus infinity)


def pcm16_dbfs(pcm: np.ndarray) -> float:
    """RMS level of PCM16 samples in dB relative to full scale (``SILENCE_DBFS`` at least)."""
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) / 32768.0
    return max(SILENCE_DBFS, 20.0 * float(np.log10(rms))) if rms > 0 else SILENCE_DBFS


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """Linear PCM16 -> 8-bit mu-law bytes (bit-exact with the ITU/Sun reference coder)."""
    x = pcm.astype(np.int32) >> 2  # mu-law works on 14-bit samples
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), _MULAW_CLIP) + _MULAW_BIAS
    segment = np.floor(np.log2(mag)).astype(np.int32) - 5
    code = np.where(segment > 7, 0x7F, (segment << 4) | ((mag >> (segment + 1)) & 0x0F))
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


def mulaw_decode(data: bytes) -> np.ndarray:
    """8-bit mu-law bytes -> linear PCM16."""
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    segment = (u >> 4) & 0x07
    mag = ((((u & 0x0F) << 3) + (_MULAW_BIAS << 2)) << segment) - (_MULAW_BIAS << 2)
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def alaw_encode(pcm: np.ndarray) -> bytes:
    """Linear PCM16 -> 8-bit A-law bytes."""
    x = pcm.astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x < 0, -x - 1, x), 0xFFF)
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """8-bit A-law bytes -> linear PCM16."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, mag, -mag).astype(np.int16)
