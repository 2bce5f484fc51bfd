"""voicebot: a self-hosted AI voice agent for call centers.

Audio flows one way through small stages (see ``voicebot.pipeline``):
transport frames -> VAD/endpointing -> ASR -> dialog -> TTS -> transport frames.
"""

__version__ = "0.1.0"
