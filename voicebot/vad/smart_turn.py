"""Smart Turn v3.2: an audio end-of-turn model, a further signal for dialog-aware endpointing.

At a pause in an open answer (a free request, where no text rule decides whether the caller
has finished) the model hears the turn's last 8 s and says how likely it is complete: a
sentence cut mid-way sounds unfinished (pitch, rhythm, a held vowel) even when its words
could end there. ``voicebot.pipeline.endpoint.TurnEnd`` waits the long pause for "not
complete" and the short one for "complete".

The weights (BSD-2-Clause, 8.7 MB int8 ONNX) ship inside the ``pipecat-ai`` wheel; only the
file is used, found through the package's metadata (importing pipecat would patch asyncio
and pull in ~25 packages), so install it with ``--no-deps``. A local ``.onnx`` path works
too. Features are Whisper's log-mel over 8 s (faster-whisper's extractor; the same numbers
as the model's reference extractor to 3e-6).
"""

from pathlib import Path

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.errors import ModelNotFoundError
from voicebot.models.resolve import wheel_file

PACKAGE = "pipecat-ai==1.14.0"
_WHEEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
WINDOW_S = 8  # the model hears the turn's last 8 s, left-padded with silence
_SAMPLES = WINDOW_S * SAMPLE_RATE
_FRAMES = WINDOW_S * 100  # log-mel frames (10 ms hop)
_NORM_EPS = 1e-7


def model_path(name: str = "smart-turn-v3.2") -> Path:
    """The ONNX file: ``name`` if it is a path to one, else the file in ``pipecat-ai``."""
    if name.endswith(".onnx"):
        path = Path(name)
        if not path.is_file():
            raise ModelNotFoundError(f"turn model {name!r}: no such file")
        return path
    if name != "smart-turn-v3.2":
        raise ModelNotFoundError(f"unknown turn model {name!r}: smart-turn-v3.2 or an .onnx path")
    return wheel_file(PACKAGE, _WHEEL_FILE, f"turn model {name!r}")


class SmartTurn:
    """``p_complete(audio)``: the probability that the caller's turn is over."""

    def __init__(self, name: str = "smart-turn-v3.2") -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1  # one decision at a time per worker thread
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_cpu_mem_arena = False  # as Piper's (voicebot.tts.piper._load)
        self._session = ort.InferenceSession(
            str(model_path(name)), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)

    def p_complete(self, audio: np.ndarray) -> float:
        """``audio``: the turn so far, 16 kHz float32 (the last 8 s count)."""
        window = np.zeros(_SAMPLES, np.float32)
        tail = audio[-_SAMPLES:]
        window[_SAMPLES - len(tail) :] = tail
        window = (window - window.mean()) / np.sqrt(window.var() + _NORM_EPS)
        features = self._features(window, padding=0)[:, :_FRAMES]
        (logits,) = self._session.run(None, {"input_features": features[None]})
        return float(np.asarray(logits).ravel()[0])
