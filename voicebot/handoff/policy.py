"""When the bot should stop trying and hand the call to a person.

The policy watches per-turn signals (recognizer confidence, intent confidence and margin,
out-of-scope, anger, explicit requests) and the dialog's outcomes (re-prompts, the same
request coming back unresolved, silence), and answers each caller turn with a ``Decision``.

It is a ladder, not a cliff: the first turn the bot is unsure of gets a confirmation
("Did you want to report a lost card?") or a request to rephrase; a second unsure turn in a
row hands off with ``low_confidence``. Explicit requests (``caller_request``) and clearly
angry callers (``negative_sentiment``) are handed off at once, since making them repeat
themselves is exactly what loses callers. Tasks that go round in circles end with
``repeated_failure``.

A caller the recognizer cannot make out (speech, but no usable words) climbs the same
ladder: asked again once, then handed off with ``low_confidence``. Never treated as silence,
so a person who is talking is never hung up on.

Thresholds are per pack (the ``escalation`` section of the pack YAML; see docs/packs.md).
One ``EscalationPolicy`` per call: it keeps the counters.
"""

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from voicebot.events import Decision, IntentResult, Transcript
from voicebot.handoff.sentiment import Sentiment
from voicebot.settings import flat_settings

OUT_OF_SCOPE = "out_of_scope"
# Intents that are answers or politeness, never "the caller's request".
_NOT_REQUESTS = frozenset({"affirm", "deny", "goodbye", OUT_OF_SCOPE})
_ASKS_FOR_PERSON = re.compile(
    r"\b(agent|representative|operator|human|real person|live person|somebody real|"
    r"someone real|actual person|a person)\b"
)
_REFUSES_PERSON = re.compile(r"\b(don't|do not|no) (need|want) (an? )?(agent|person|human)")


@dataclass(frozen=True)
class EscalationConfig:
    """Thresholds of the escalation ladder; every field can be set in a pack's YAML."""

    min_asr_logprob: float = -1.0  # Whisper avg log-prob below this: probably misheard
    # ...but an answer that parsed ("Yes, the car mending in 4-5-6") is held to this lower
    # floor: the words after a clear yes pull the average down, not the yes (measured on
    # real recognizer outputs, tests/data/recognizer_outputs.jsonl).
    answer_min_asr_logprob: float = -1.3
    max_no_speech_prob: float = 0.6  # ...or Whisper thinks there was hardly any speech
    # Calibrated intent confidence below this: unsure. The classifier already calls anything
    # under its own out-of-scope floor (~0.7) out of scope; raise this to be stricter.
    min_intent_confidence: float = 0.7
    min_margin: float = 0.15  # top-1 minus top-2 below this: two intents compete
    # Hanging up cannot be undone, and "Thank you." is Whisper's favourite hallucination on
    # mumbled audio: a goodbye before the caller got anything must be heard at least this well.
    goodbye_min_asr_logprob: float = -0.6
    # An unsure turn's likeliest request is offered back ("Did you want to ...?") when it is
    # this likely and this far ahead of the next request; otherwise the caller rephrases.
    confirm_floor: float = 0.15
    confirm_lead: float = 0.1
    low_confidence_turns: int = 2  # unsure turns in a row that hand the call off
    failed_turns: int = 3  # turns in a row with no progress (fallbacks, re-prompts)
    repeated_intent: int = 3  # the same request this often without being resolved
    anger: float = 1.0  # anger score of one turn that hands off at once
    anger_total: float = 1.5  # anger summed over the call that hands off
    no_input: int = 2  # silences in a row (after the caller has spoken) that hand off

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "EscalationConfig":
        """Build from YAML values; unknown keys or wrong types raise ``ValueError``."""
        return flat_settings(cls, values, "escalation")


@dataclass(frozen=True)
class TurnSignals:
    """Everything the policy knows about one caller turn (recorded with each decision)."""

    text: str
    intent: str
    confidence: float
    margin: float
    asr_logprob: float | None = None  # None for typed text (chat, DTMF)
    no_speech_prob: float | None = None
    anger: float = 0.0
    anger_cues: tuple[str, ...] = ()
    answering: bool = False  # read as the answer to the bot's open question
    candidate: str | None = None  # the likeliest real request, even when out of scope
    candidate_score: float = 0.0
    candidate_lead: float = 0.0  # its score minus the next request's

    @classmethod
    def of(
        cls,
        text: str,
        intent: IntentResult,
        sentiment: Sentiment,
        transcript: Transcript | None,
        *,
        answering: bool,
    ) -> "TurnSignals":
        ranked = sorted(
            (
                (float(p), str(name))
                for name, p in intent.scores.items()
                if name not in _NOT_REQUESTS
            ),
            reverse=True,
        )
        best, runner_up = [*ranked, (0.0, None), (0.0, None)][:2]
        return cls(
            text=text,
            intent=str(intent.intent),
            confidence=round(intent.confidence, 4),
            margin=round(intent.margin, 4),
            asr_logprob=round(transcript.avg_logprob, 4) if transcript else None,
            no_speech_prob=round(transcript.no_speech_prob, 4) if transcript else None,
            anger=sentiment.anger,
            anger_cues=sentiment.cues,
            answering=answering,
            candidate=best[1],
            candidate_score=round(best[0], 4),
            candidate_lead=round(best[0] - runner_up[0], 4),
        )


class EscalationPolicy:
    """Per-call escalation state: ``assess`` each turn, then report the dialog's outcome."""

    def __init__(self, config: EscalationConfig | None = None) -> None:
        self.config = config or EscalationConfig()
        self._unsure = 0  # unsure turns in a row
        self._failed = 0  # turns in a row that made no progress
        self._silences = 0
        self._spoke = False  # the caller has said something this call
        self._served = False  # the bot has answered a request or completed a task
        self._anger_total = 0.0
        self._unresolved: Counter[str] = Counter()
        self.decisions: list[Decision] = []

    # --- before the dialog answers --------------------------------------------------------

    def assess(self, signals: TurnSignals) -> Decision:
        """Decide what to do with a caller turn before the dialog routes it."""
        self._spoke = True
        self._silences = 0
        c = self.config
        self._anger_total += signals.anger
        data = asdict(signals)
        if self._asks_for_person(signals):
            return self.decide("handoff", "caller_request", "the caller asked for a person", data)
        if signals.anger >= c.anger or self._anger_total >= c.anger_total:
            cues = ", ".join(repr(cue) for cue in signals.anger_cues) or "earlier turns"
            why = f"anger {signals.anger:.1f} (call {self._anger_total:.1f}): {cues}"
            return self.decide("handoff", "negative_sentiment", why, data)
        unsure = self._unsure_because(signals)
        if unsure is None:
            if not signals.answering:  # an answer shows nothing about understanding requests
                self._unsure = 0
            return self.decide("proceed", None, "", data)
        self._unsure += 1
        if self._unsure >= c.low_confidence_turns:
            why = f"{unsure} ({self._unsure} unsure turns in a row)"
            return self.decide("handoff", "low_confidence", why, data)
        if (
            signals.candidate is not None
            and signals.candidate_score >= c.confirm_floor
            and signals.candidate_lead >= c.confirm_lead
            and not self._misheard(signals)
        ):
            return self.decide("confirm", "unsure_intent", unsure, data)
        return self.decide("rephrase", "unsure", unsure, data)

    @property
    def anger_total(self) -> float:
        return round(self._anger_total, 2)

    @property
    def served(self) -> bool:
        """The bot has answered a request or completed a task this call."""
        return self._served

    def understood(self) -> None:
        """An unsure turn turned out fine (the caller confirmed, or the LLM could answer)."""
        self._unsure = 0

    def not_understood(self, transcript: Transcript) -> Decision:
        """The caller spoke, but the recognizer gave nothing usable: an unsure turn (asked
        again), and the ``low_confidence_turns``-th in a row hands off."""
        self._spoke = True
        self._silences = 0
        self._unsure += 1
        data = {
            "heard": "no_words",
            "dropped": transcript.dropped,
            "raw_text": transcript.raw_text,
            "asr_logprob": round(transcript.avg_logprob, 4),
            "no_speech_prob": round(transcript.no_speech_prob, 4),
        }
        why = f"speech the recognizer could not make out ({transcript.dropped})"
        if self._unsure >= self.config.low_confidence_turns:
            why = f"{why} ({self._unsure} unsure turns in a row)"
            return self.decide("handoff", "low_confidence", why, data)
        return self.decide("rephrase", "not_understood", why, data)

    # --- after the dialog answered --------------------------------------------------------

    def outcome(self, kind: str, intent: str | None, resolved: bool) -> Decision | None:
        """Count progress; returns a ``repeated_failure`` handoff when the call goes round
        in circles. ``kind`` is the reply kind; ``resolved`` that a task was completed."""
        c = self.config
        if kind in ("fallback", "reprompt"):
            self._failed += 1
        else:
            self._failed = 0
        self._served = self._served or kind == "answer"
        if intent is not None and intent not in _NOT_REQUESTS and intent != "speak_to_agent":
            if resolved:
                self._unresolved[intent] = 0
            elif kind != "reprompt":
                self._unresolved[intent] += 1
        counts = {"failed_turns": self._failed, "unresolved": dict(self._unresolved)}
        if self._failed >= c.failed_turns:
            why = f"{self._failed} turns in a row without progress"
            return self.decide("handoff", "repeated_failure", why, counts)
        if intent is not None and self._unresolved[intent] >= c.repeated_intent:
            why = f"{intent} asked {self._unresolved[intent]} times without being resolved"
            return self.decide("handoff", "repeated_failure", why, counts)
        return None

    def silence(self) -> Decision | None:
        """The caller said nothing for a while. A line that was never answered ends
        politely (nobody is there); repeated silence mid-conversation goes to a person."""
        self._silences += 1
        if self._spoke and self._silences >= self.config.no_input:
            why = f"{self._silences} silent re-prompts in a row"
            return self.decide("handoff", "repeated_failure", why, {"silences": self._silences})
        return None

    # --- helpers ------------------------------------------------------------------------

    def _asks_for_person(self, s: TurnSignals) -> bool:
        text = s.text.lower()
        if _REFUSES_PERSON.search(text) or s.intent == "deny":
            return False
        if s.intent == "speak_to_agent":
            return s.confidence >= self.config.confirm_floor
        # Keyword backstop for noisy transcripts the classifier could not place.
        return s.intent == OUT_OF_SCOPE and bool(_ASKS_FOR_PERSON.search(text))

    def _misheard(self, s: TurnSignals) -> str | None:
        c = self.config
        floor = c.answer_min_asr_logprob if s.answering else c.min_asr_logprob
        if s.asr_logprob is not None and s.asr_logprob < floor:
            return f"recognizer log-prob {s.asr_logprob:.2f} < {floor}"
        if s.no_speech_prob is not None and s.no_speech_prob > c.max_no_speech_prob:
            return f"no-speech prob {s.no_speech_prob:.2f} > {c.max_no_speech_prob}"
        return None

    def _unsure_because(self, s: TurnSignals) -> str | None:
        """Why the bot should not act on this turn as understood, or None."""
        misheard = self._misheard(s)
        if misheard:
            return misheard
        if s.answering:
            return None  # the answer parsed; intent scores don't apply to "4 5 6 7"
        c = self.config
        if (
            s.intent == "goodbye"
            and not self._served
            and s.asr_logprob is not None
            and s.asr_logprob < c.goodbye_min_asr_logprob
        ):
            return (
                f"goodbye before anything was done, recognizer log-prob {s.asr_logprob:.2f} "
                f"< {c.goodbye_min_asr_logprob}"
            )
        if s.intent == OUT_OF_SCOPE:
            return f"out of scope (best intent {s.confidence:.2f})"
        if s.confidence < c.min_intent_confidence:
            return f"intent {s.intent} confidence {s.confidence:.2f} < {c.min_intent_confidence}"
        if s.margin < c.min_margin and s.intent not in _NOT_REQUESTS:
            return f"intent {s.intent} margin {s.margin:.2f} < {c.min_margin}"
        return None

    def decide(self, action: str, reason: str | None, why: str, data: dict) -> Decision:
        """Record a decision (the dialog also records its own, e.g. exhausted re-prompts)."""
        decision = Decision(action, reason, why, data)
        self.decisions.append(decision)
        return decision
