"""Silero VAD (optional): a small neural detector, steadier than webrtcvad in noise.

Silero scores 512-sample windows (32 ms at 16 kHz) while the pipeline moves in 20 ms frames,
so frames are buffered and each frame reports the most recent window's probability.
"""

import numpy as np

from voicebot.audio.pcm import pcm16_to_float
from voicebot.errors import ModelNotFoundError

_WINDOW = 512


class SileroVAD:
    """Silero VAD through its bundled ONNX model (no download)."""

    def __init__(self) -> None:
        try:
            import torch
            from silero_vad import load_silero_vad
        except ImportError as exc:
            raise ModelNotFoundError(
                "silero VAD needs the package silero-vad==6.2.3: pip install 'voicebot[silero]'"
            ) from exc
        torch.set_num_threads(1)
        self._torch = torch
        self._model = load_silero_vad(onnx=True)
        self._pending = np.zeros(0, dtype=np.float32)
        self._prob = 0.0

    def speech_prob(self, frame: np.ndarray) -> float:
        self._pending = np.concatenate([self._pending, pcm16_to_float(frame)])
        while len(self._pending) >= _WINDOW:
            window, self._pending = self._pending[:_WINDOW], self._pending[_WINDOW:]
            self._prob = float(self._model(self._torch.from_numpy(window), 16000).item())
        return self._prob

    def reset(self) -> None:
        self._model.reset_states()
        self._pending = np.zeros(0, dtype=np.float32)
        self._prob = 0.0
