"""Transports: the edges of a call (simulated caller, phone line, browser)."""

from voicebot.transports.base import Transport
from voicebot.transports.simulated import CallerSegment, Cue, SimulatedCaller

__all__ = ["CallerSegment", "Cue", "SimulatedCaller", "Transport"]
