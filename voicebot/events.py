"""Typed events passed one way between pipeline stages.

Times (``t``, ``start``, ``end``...) are seconds of *call time*: audio time since the call
started, the clock every stage and every transcript shares. In a real-time call it tracks the
wall clock; in a fast simulated call it is advanced by the audio itself (see
``voicebot.pipeline.scheduler``).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AudioFrame:
    """20 ms of caller audio, 16 kHz mono PCM16, starting at call time ``t``.

    ``dtmf`` carries keypad digits the caller finished typing (e.g. "4567"): the transport
    groups key presses, and the session answers them as a caller turn of their own.
    """

    pcm: np.ndarray
    t: float
    dtmf: str = ""


class LineState(StrEnum):
    """What the bot is doing, as a caller on the line would perceive it."""

    LISTENING = "listening"  # the bot waits for the caller
    THINKING = "thinking"  # the caller finished; the reply is being prepared
    SPEAKING = "speaking"  # bot audio is playing


@dataclass(frozen=True)
class BotFrame:
    """20 ms of bot audio (16 kHz mono PCM16; silence when the bot is quiet) at call time ``t``."""

    pcm: np.ndarray
    t: float
    state: LineState
    # Keep this tick out of the stored recording (the caller is answering a sensitive
    # question, or has not consented to recording): PCI "pause and resume".
    private: bool = False
    # A live voice (the agent's, bridged): better a glitch than lasting delay, so the line
    # may skip it when the far end already holds enough audio (``LiveLine.send``).
    live: bool = False


# --- VAD / endpointing -------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started talking; ``t`` is the first voiced frame."""

    t: float


@dataclass(frozen=True)
class SpeechPaused:
    """The caller has been quiet for a short while: a good moment for a speculative final."""

    end: float  # end of the last voiced frame


@dataclass(frozen=True)
class SpeechEnded:
    """End of the caller's turn: the silence timeout elapsed after ``end`` (or the turn
    reached its maximum length, ``cut``)."""

    start: float
    end: float  # end of the last voiced frame
    voiced_s: float  # seconds of voiced frames in the turn (noise bursts are short)
    # Ended at the maximum turn length with the caller still talking: the next turn
    # starts at ``end`` and carries on from it.
    cut: bool = False


# --- ASR ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transcript:
    """What the recognizer heard in one stretch of audio, with its confidence.

    ``dropped`` names the guard that rejected the text (silence, noise, a Whisper
    hallucination); a dropped transcript must not be answered.
    """

    text: str
    avg_logprob: float
    no_speech_prob: float
    audio_s: float
    compute_s: float
    dropped: str | None = None
    raw_text: str = ""

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else 0.0


@dataclass(frozen=True)
class CallerTurn:
    """A complete caller utterance handed to the dialog stage."""

    text: str
    transcript: Transcript
    start: float
    end: float


# --- Dialog ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntentResult:
    """A classifier's decision: ``intent`` is ``out_of_scope`` when nothing fits well enough."""

    intent: str
    confidence: float
    margin: float
    scores: dict[str, float] = field(default_factory=dict)


HANDOFF_REASONS = (
    "caller_request",
    "low_confidence",
    "repeated_failure",
    "negative_sentiment",
    "verification_locked",  # too many failed verifications for this caller today
)


@dataclass(frozen=True)
class Decision:
    """The escalation policy's verdict on one caller turn, with the evidence behind it.

    ``action`` is ``proceed`` (the dialog answers normally), ``confirm`` (ask "Did you want
    to ...?"), ``rephrase`` (ask the caller to say it another way) or ``handoff``.
    ``reason`` is one of ``HANDOFF_REASONS`` for a handoff, else a short tag of what fired.
    ``signals`` holds the values the decision was made on, so every transfer can be audited.
    """

    action: str
    reason: str | None = None
    explanation: str = ""
    signals: dict[str, Any] = field(default_factory=dict)


class Expect(StrEnum):
    """The kind of answer the bot's open question asks for."""

    REQUEST = "request"  # no question open: "How can I help?"
    YES_NO = "yes_no"  # a confirmation
    DIGITS = "digits"  # a ZIP code, the last four of a card, a PIN
    PHONE = "phone"
    AMOUNT = "amount"
    DATE = "date"
    TEXT = "text"  # free words: what happened, an address


@dataclass(frozen=True)
class Expectation:
    """What the caller is expected to say next, as the dialog knows it after its reply.

    One description for every stage that adapts to it: the recognizer can be biased toward
    it (digits), the endpointer can wait until it is complete, and while ``sensitive`` is set
    the answer is masked wherever it is stored and the recording is muted.
    """

    kind: Expect = Expect.REQUEST
    digits: int | None = None  # the expected number of digits (a card's last four: 4)
    slot: str | None = None  # the slot (or "verification", "phone") being asked for
    sensitive: bool = False


class ConsentState(StrEnum):
    """Where the caller stands on being recorded (``voicebot.privacy.call``)."""

    NONE = "none"  # the pack seeks no consent: nothing is recorded
    NOTIFIED = "notified"  # told the call is recorded (an announcement, no question)
    ASKED = "asked"  # asked to opt in; no answer yet
    GRANTED = "granted"
    DECLINED = "declined"
    NO_ANSWER = "no_answer"  # went on without answering: taken as no

    @property
    def allows_recording(self) -> bool:
        return self in (ConsentState.NOTIFIED, ConsentState.GRANTED)


@dataclass(frozen=True)
class Reply:
    """What the bot says next. ``end_call`` hangs up once it has been spoken.

    A handoff reply (``kind == "handoff"``) carries the policy ``decision`` that caused it and
    ``context``: the dialog's state (caller identity, intents, slots, what was done, what is
    pending) for the handoff packet. ``expects`` is what the caller should answer.
    ``consent`` is set on the reply that changes the caller's recording consent.
    """

    text: str
    kind: str  # greeting | answer | question | fallback | reprompt | farewell | handoff
    intent: IntentResult | None = None
    end_call: bool = False
    decision: Decision | None = None
    context: dict[str, Any] | None = None
    expects: Expectation = field(default_factory=Expectation)
    consent: ConsentState | None = None

    @property
    def reason(self) -> str | None:
        """Why the call is handed off (one of ``HANDOFF_REASONS``), else None."""
        return self.decision.reason if self.kind == "handoff" and self.decision else None


# --- TTS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechChunk:
    """Synthesized audio for one sentence of a reply (16 kHz mono PCM16)."""

    text: str
    pcm: np.ndarray
