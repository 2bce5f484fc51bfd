"""The transport protocol: how caller audio reaches a call and bot audio leaves it."""

from typing import Protocol

from voicebot.events import AudioFrame, BotFrame


class Transport(Protocol):
    """One call's line. Frames are 20 ms, 16 kHz mono PCM16; conversion happens inside.

    The call reads one caller frame and writes one bot frame per tick, so a transport that
    paces its input (a phone line, a real-time simulation) paces the whole call.
    """

    # Someone sees partial transcripts on this line (a browser page, a terminal). A phone
    # line does not: its calls spend no recognizer time on them, which is what lets one
    # CPU carry more calls. The speculative and final transcripts are made either way.
    shows_partials: bool

    # Whose doing the end of the line was, once ``receive`` has returned None: the call
    # record's ``ended_by`` (``caller`` for a hang-up; a live line may also say
    # ``protocol``, ``overload``, ``shutdown`` or ``error``: ``transports.line.Hangup``).
    ended_by: str

    async def receive(self) -> AudioFrame | None:
        """The next caller frame, or None once the caller has hung up."""
        ...

    async def send(self, frame: BotFrame) -> None:
        """Play one bot frame (silence while the bot is quiet)."""
        ...

    async def interrupt(self) -> None:
        """Barge-in: drop any bot audio the far end still has buffered."""
        ...
