"""One call's privacy: what is masked in its record, when its recording is muted, consent.

``CallPrivacy`` is driven by the session (``voicebot.pipeline.session``) at four points:
a caller turn is recorded, a reply arrives, a bot turn is recorded, a bot frame goes out.
It masks each caller turn in the context of the question being answered (a verification
answer is masked whole), remasks the previous turn when a number went on across a pause,
masks what the dialog's replies carry (the policy's signals, the state for a handoff), and
keeps the recording muted while a sensitive answer is given or without consent, listing
the muted spans in the record (PCI "pause and resume").

``ConsentDialog`` wraps any ``Dialog``: the pack's consent announcement is said with the
greeting, and where the pack asks for an explicit opt-in ("say yes or press 1") the caller's
answer decides whether the call is recorded. Consent reaches the record through
``Reply.consent``; the dialog itself is not changed.
"""

import logging
from dataclasses import replace
from datetime import UTC, datetime

from voicebot.dialog.base import Dialog
from voicebot.dialog.slots import parse_yes_no
from voicebot.events import CallerTurn, ConsentState, Decision, Expect, Expectation, Reply
from voicebot.pipeline.record import CallRecord, Turn
from voicebot.privacy.config import ConsentConfig, PrivacyConfig
from voicebot.privacy.redact import FAILED, CallRedactor, guarded, redact, redact_json

log = logging.getLogger(__name__)

NOT_KEPT = "[not kept: no recording consent]"


class ConsentDialog:
    """A ``Dialog`` that seeks recording consent before handing the call to ``inner``."""

    def __init__(self, inner: Dialog, config: ConsentConfig) -> None:
        self._inner = inner
        self._config = config
        self._asking = False

    def greet(self) -> Reply:
        greeting = self._inner.greet()
        announcement = self._config.announcement
        if self._config.opt_in is None:
            text = f"{announcement} {greeting.text}"
            return replace(greeting, text=text, consent=ConsentState.NOTIFIED)
        self._asking = True
        return Reply(
            f"{announcement} {self._config.opt_in}",
            kind="greeting",
            expects=Expectation(Expect.YES_NO, slot="consent"),
            consent=ConsentState.ASKED,
        )

    def respond(self, turn: CallerTurn) -> Reply:
        if not self._asking:
            return self._inner.respond(turn)
        self._asking = False
        answer = _consent_answer(turn.text)
        if answer is None:  # the caller went straight to their request: no consent
            return replace(self._inner.respond(turn), consent=ConsentState.NO_ANSWER)
        greeting = self._inner.greet()
        said = self._config.accepted if answer else self._config.declined
        consent = ConsentState.GRANTED if answer else ConsentState.DECLINED
        return replace(greeting, text=f"{said} {greeting.text}", consent=consent)

    def not_understood(self, turn: CallerTurn) -> Reply:
        """Speech nobody could make out, as the answer to the opt-in: no consent (nothing is
        recorded on a guess), and the dialog deals with the unheard turn as with any other."""
        if not self._asking:
            return self._inner.not_understood(turn)
        self._asking = False
        return replace(self._inner.not_understood(turn), consent=ConsentState.NO_ANSWER)

    def no_input(self) -> Reply:
        return self._inner.no_input()


def _consent_answer(text: str) -> bool | None:
    """Yes or keypad 1 allows, no or keypad 2 refuses; anything else is no answer."""
    keys = text.replace(" ", "")
    if keys in ("1", "2"):
        return keys == "1"
    return parse_yes_no(text)


class CallPrivacy:
    """Masks one call's record as it is written and decides what its recording keeps."""

    def __init__(self, record: CallRecord, config: PrivacyConfig | None = None) -> None:
        self.record = record
        self._config = config or PrivacyConfig()
        self._redactor = CallRedactor()
        self._expects = Expectation()
        self._consent: ConsentState | None = None  # unknown until the greeting is ready
        self._contexts: dict[int, Expectation] = {}  # id(caller turn) -> what it answered
        self._previous: Turn | None = None
        self._muted: tuple[float, str] | None = (0.0, "consent")  # (since, why)
        self._recorded = False  # some audio was allowed into the recording

    # --- the session's hooks -------------------------------------------------------------

    def caller_turn(self, turn: Turn) -> None:
        """Mask a caller turn before it is stored; the dialog still gets its clear text."""
        expects = self._expects
        self._contexts[id(turn)] = expects
        raw = turn.asr.get("raw_text", "") if turn.asr else ""
        try:
            now, before = self._redactor.redact(turn.text, expects)
            raw_masked = now.text if raw == turn.text else redact(raw, expects).text
        except Exception as exc:
            # The exception's type only: its message could quote the text.
            log.error(
                "redaction of a caller turn failed (%s); stored as %s", type(exc).__name__, FAILED
            )
            turn.text = FAILED
            if turn.asr:
                turn.asr["raw_text"] = FAILED
            return
        if before is not None and self._previous is not None:
            previous = self._previous
            if previous.asr and previous.asr.get("raw_text") == previous.text:
                previous.asr["raw_text"] = before.text
            previous.text = before.text
        turn.text = now.text
        if turn.asr:
            turn.asr["raw_text"] = raw_masked
        consent = self.consent
        if not self._keeps_words(consent):
            turn.text = NOT_KEPT if turn.text else ""
            if turn.asr:
                turn.asr["raw_text"] = NOT_KEPT
        self._previous = turn

    def reply(self, reply: Reply, caller: Turn | None, t: float) -> Reply:
        """Note what the reply asks and any change of consent; mask what it carries."""
        if reply.consent is not None or self._consent is None:
            self._set_consent(reply.consent or ConsentState.NONE, t)
        self._expects = reply.expects
        self._update_mute(t)
        context = self._contexts.get(id(caller), Expectation()) if caller else Expectation()
        decision = reply.decision
        if decision is not None:
            decision = _masked_decision(decision, context)
        state = redact_json(reply.context) if reply.context is not None else None
        return replace(reply, decision=decision, context=state)

    def bot_turn(self, turn: Turn) -> None:
        """The bot reads back what it must (a card's last four); anything more is masked."""
        turn.text = guarded(lambda: redact(turn.text).text)
        if turn.planned_text:
            planned = turn.planned_text
            turn.planned_text = guarded(lambda: redact(planned).text)

    def tick_private(self) -> bool:
        """Whether this tick of audio stays out of the stored recording."""
        private = self._muted is not None
        self._recorded = self._recorded or not private
        return private

    def finish(self, t: float) -> None:
        """Close the last muted span; a call with no recorded audio has no recording.

        The span stays in force: the session may still send the tick that finished the call,
        and that audio belongs to the span."""
        if self._muted is not None:
            self._close_mute(t)
        if self.record.consent is None:
            self._set_consent(ConsentState.NONE, t)
        if not self._recorded:
            self.record.recording = None

    # --- state ---------------------------------------------------------------------------

    @property
    def consent(self) -> ConsentState:
        return self._consent or ConsentState.NONE

    def _keeps_words(self, consent: ConsentState) -> bool:
        config = self._config.consent
        if config is None or config.keep_transcript or consent is ConsentState.ASKED:
            return True
        return consent.allows_recording

    def _set_consent(self, state: ConsentState, t: float) -> None:
        self._consent = state
        self.record.consent = {
            "state": state.value,
            "at": datetime.now(UTC).isoformat(),
            "t": round(t, 3),
        }

    def _update_mute(self, t: float) -> None:
        why = None
        if not self.consent.allows_recording:
            why = "consent"
        elif self._expects.sensitive:
            why = self._expects.slot or "sensitive"
        current = self._muted[1] if self._muted else None
        if why == current:
            return
        if self._muted is not None:
            self._close_mute(t)
        self._muted = (t, why) if why else None

    def _close_mute(self, t: float) -> None:
        assert self._muted is not None
        since, why = self._muted
        self.record.muted.append({"start": round(since, 3), "end": round(t, 3), "reason": why})


def _masked_decision(decision: Decision, context: Expectation) -> Decision:
    """The policy records the text it judged: mask it as the caller turn was masked."""
    signals = redact_json({k: v for k, v in decision.signals.items() if k != "text"})
    text = decision.signals.get("text")
    if isinstance(text, str):
        signals["text"] = guarded(lambda: redact(text, context).text)
    explanation = guarded(lambda: redact(decision.explanation).text)
    return replace(decision, signals=signals, explanation=explanation)
