"""Voice-activity detection and endpointing."""

from voicebot.vad.base import VAD
from voicebot.vad.endpointer import Endpointer, EndpointerConfig
from voicebot.vad.webrtc import WebRtcVAD

VAD_BACKENDS = ("webrtc", "silero")


def make_vad(name: str = "webrtc") -> VAD:
    """Build a per-call detector by name: ``webrtc`` (default) or ``silero``."""
    if name == "webrtc":
        return WebRtcVAD()
    if name == "silero":
        from voicebot.vad.silero import SileroVAD

        return SileroVAD()
    raise ValueError(f"unknown VAD {name!r}; choose one of {', '.join(VAD_BACKENDS)}")


__all__ = ["VAD", "VAD_BACKENDS", "Endpointer", "EndpointerConfig", "WebRtcVAD", "make_vad"]
