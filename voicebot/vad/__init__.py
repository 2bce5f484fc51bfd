"""Voice-activity detection and endpointing."""

from voicebot.vad.base import VAD
from voicebot.vad.endpointer import Endpointer, EndpointerConfig
from voicebot.vad.webrtc import WebRtcVAD

VAD_BACKENDS = ("webrtc+silero", "silero", "webrtc")
# webrtcvad's frames where Silero hears speech: no turn on hum, hold music or traffic,
# where webrtcvad alone hears speech in every frame, and the endpointing webrtcvad's
# timings were tuned on (Silero alone cuts 24 of 34 mid-sentence pauses against 16;
# scripts/bench_noise.py, voicebot eval turns, docs/benchmarks.md).
DEFAULT_VAD = "webrtc+silero"


def make_vad(name: str = DEFAULT_VAD) -> VAD:
    """Build a per-call detector by name: ``webrtc+silero`` (default), ``silero`` or
    ``webrtc``."""
    if name == "webrtc":
        return WebRtcVAD()
    if name == "silero":
        from voicebot.vad.silero import SileroVAD

        return SileroVAD()
    if name == "webrtc+silero":
        from voicebot.vad.silero import ConfirmedVAD

        return ConfirmedVAD(WebRtcVAD())
    raise ValueError(f"unknown VAD {name!r}; choose one of {', '.join(VAD_BACKENDS)}")


__all__ = [
    "DEFAULT_VAD",
    "VAD",
    "VAD_BACKENDS",
    "Endpointer",
    "EndpointerConfig",
    "WebRtcVAD",
    "make_vad",
]
