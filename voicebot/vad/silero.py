"""Silero VAD v6: a small neural detector that tells speech from the sounds webrtcvad takes
for it (mains hum, hold music, traffic: docs/benchmarks.md), and ``ConfirmedVAD``, the
default: webrtcvad's frames where Silero hears speech.

The ONNX file (MIT) ships in the ``silero-vad`` package; only the file is used, found through
the package's metadata (importing the package imports torch), and it runs straight on
onnxruntime: the package's torch wrapper costs 7x more a frame (0.83 ms against 0.12 ms on
2 cores), and the VAD runs on the event loop for every frame of every call. One session
serves every call; each call keeps its own recurrent state and context.

Silero scores 512-sample windows (32 ms at 16 kHz), each after the previous window's last 64
samples, while the pipeline moves in 20 ms frames: frames are buffered, and each frame
reports the most recent window's probability.
"""

from functools import cache

import numpy as np

from voicebot.audio.frames import FRAME_MS, SAMPLE_RATE
from voicebot.audio.pcm import pcm16_to_float
from voicebot.models.resolve import wheel_file
from voicebot.vad.base import VAD

PACKAGE = "silero-vad==6.2.3"
_WHEEL_FILE = "silero_vad/data/silero_vad.onnx"
_WINDOW = 512
_CONTEXT = 64


@cache
def _session():  # -> onnxruntime.InferenceSession; shared, as run() is thread-safe
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1  # 0.19 ms a window: threads would only add overhead
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = wheel_file(PACKAGE, _WHEEL_FILE, "Silero VAD model")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class SileroVAD:
    """One call's Silero detector (``VAD``)."""

    vouches = True

    def __init__(self) -> None:
        self._model = _session()
        self._rate = np.array(SAMPLE_RATE, np.int64)
        self.reset()

    def speech_prob(self, frame: np.ndarray) -> float:
        self._pending = np.concatenate([self._pending, pcm16_to_float(frame)])
        while len(self._pending) >= _WINDOW:
            window = np.concatenate([self._context, self._pending[:_WINDOW]])
            self._pending = self._pending[_WINDOW:]
            self._context = window[-_CONTEXT:]
            out, self._state = self._model.run(
                None, {"input": window[None], "state": self._state, "sr": self._rate}
            )
            self._prob = float(out[0, 0])
        return self._prob

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._prob = 0.0


class ConfirmedVAD:
    """webrtcvad's frames, where Silero has heard speech within the last ``hold_ms``.

    Each detector does what it is best at: webrtcvad follows a caller's speech closely on a
    phone line (its own hangover is what the endpointer's timings were tuned on), and
    Silero says whether there is speech at all (none in hum, music or traffic, where
    webrtcvad hears speech in every frame). ``hold_ms`` bridges Silero's gaps inside
    speech (up to 340 ms over our 25 caller voices; 300 ms cut 22 of 34 mid-sentence
    pauses against webrtcvad's 16, 1 s cut 17); on a noisy line a turn ends that long
    after the caller's last word, where with webrtcvad alone it never ended."""

    def __init__(self, webrtc: VAD, hold_ms: int = 1000) -> None:
        self._webrtc = webrtc
        self._silero = SileroVAD()
        self._hold_frames = hold_ms // FRAME_MS
        self._since = self._hold_frames + 1  # frames since Silero last heard speech

    @property
    def vouches(self) -> bool:
        return self._since <= self._hold_frames

    def speech_prob(self, frame: np.ndarray) -> float:
        heard = self._silero.speech_prob(frame) >= 0.5
        self._since = 0 if heard else self._since + 1
        return self._webrtc.speech_prob(frame)

    def reset(self) -> None:
        self._webrtc.reset()
        self._silero.reset()
        self._since = self._hold_frames + 1
