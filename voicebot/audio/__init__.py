"""Audio plumbing: file I/O, PCM conversions, telephone codecs, resampling, framing.

Inside the pipeline every stage sees 16 kHz mono PCM16 in 20 ms frames; transports convert
once at the edge.
"""

from voicebot.audio.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, iter_frames
from voicebot.audio.io import load_audio, write_wav_atomic
from voicebot.audio.pcm import float_to_pcm16, pcm16_to_float
from voicebot.audio.resample import StreamResampler, resample

__all__ = [
    "FRAME_MS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "StreamResampler",
    "float_to_pcm16",
    "iter_frames",
    "load_audio",
    "pcm16_to_float",
    "resample",
    "write_wav_atomic",
]
