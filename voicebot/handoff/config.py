"""A pack's ``queue:`` settings: how handed-off callers wait for a person (hold messages,
the queue timeout, the callback offer). Defaults live here only; see ``docs/packs.md``."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.settings import flat_settings


@dataclass(frozen=True)
class QueueConfig:
    """A pack's ``queue:`` section: how callers wait for a person (defaults here only)."""

    hold_every_s: float = 15.0  # the hold message repeats this often
    queue_timeout_s: float = 120.0  # unclaimed this long: offer a callback
    wait_per_caller_s: float = 60.0  # the wait estimate per caller ahead (and this one)
    callback_attempts: int = 2  # tries at getting a number before taking a message
    hold_message: str = (
        "All our agents are busy. You are number {position} in the queue, and the wait is "
        "about {wait}. Please stay on the line."
    )
    callback_offer: str = (
        "Sorry for the wait. We can call you back instead. Shall we call you at the number "
        "ending in {last_four}? Please say yes, or say the number we should call."
    )
    callback_ask: str = "Please say the phone number we should call you back on."
    callback_done: str = (
        "Thank you. An agent will call you back at the number ending in {last_four}. Goodbye."
    )
    message_prompt: str = "Please leave a short message now, and an agent will get back to you."
    message_done: str = "Thank you, we have your message. Goodbye."
    agent_left: str = (
        "Sorry, we lost the connection to the agent. Please stay on the line: the next agent "
        "will be with you shortly."
    )
    # What the caller hears between hold messages, so the line never sounds dead: "silence",
    # "chime" (a soft two-note chime every 4 s, built in), or an audio file (looped; a path
    # absolute or relative to the working directory).
    hold_audio: str = "chime"

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "QueueConfig":
        """Build from YAML values; unknown keys or wrong types raise ``ValueError``."""
        config = flat_settings(cls, values, "queue", positive=True)
        audio = config.hold_audio
        if audio not in HOLD_AUDIO_BUILT_IN and not Path(audio).is_file():
            raise ValueError(f"queue.hold_audio: no audio file {audio!r} (or: silence, chime)")
        return config


HOLD_AUDIO_BUILT_IN = ("silence", "chime")


def wait_text(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return "one minute" if minutes == 1 else f"{minutes} minutes"
