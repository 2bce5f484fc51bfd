"""The dialog manager: intents, multi-turn flows, verification and back-office actions.

One instance per call. Each caller turn is handled in this order:

1. If the bot asked a question (a slot, a confirmation, the verification answer), the turn is
   first read as an answer to it.
2. Otherwise, or when the turn clearly asks for something else (a confident intent that is
   not a yes/no), it is routed by intent: a flow starts (after verifying the caller if the
   flow needs it), a static answer is given, or the caller hears the fallback. A flow that
   was interrupted this way is resumed once the digression is done.
3. A question asked ``max_attempts`` times without a usable answer, or a failed
   verification, hands the call to a person.

Before any of that, the escalation policy (``voicebot.handoff.policy``) looks at the turn:
an explicit request for a person or an angry caller is handed off at once; a turn the bot is
unsure of (misheard, out of scope, low intent confidence) gets "Did you want to ...?" or a
request to rephrase, and a second one in a row is handed off. After the answer the policy
counts progress, so a call going round in circles ends with a person too.

Everything said is a ``Reply``; ``kind == "handoff"`` tells the pipeline to transfer, and
carries the policy's decision and a snapshot of the dialog state for the handoff packet.
"""

import logging
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from voicebot.dialog.actions import ACTIONS, CALLER_ID_SLOT, FLOW_SLOT, say_digits, slot_for_speech
from voicebot.dialog.base import IntentClassifier
from voicebot.dialog.llm import LLMClient, LLMError
from voicebot.dialog.pack import OUT_OF_SCOPE, Flow, Pack, SlotSpec
from voicebot.dialog.slots import (
    digit_run,
    offered_actions,
    parse_closing,
    parse_digit_slot,
    parse_slot,
    parse_yes_no,
)
from voicebot.events import (
    CallerTurn,
    Decision,
    Expect,
    Expectation,
    IntentResult,
    Reply,
    Transcript,
)
from voicebot.handoff.policy import EscalationPolicy, TurnSignals
from voicebot.handoff.sentiment import analyze
from voicebot.privacy.lockout import VerificationLockout
from voicebot.services.base import ServiceError, Services

log = logging.getLogger(__name__)

_ANSWERS = {"affirm", "deny"}
_DIGIT_SLOTS = frozenset({"digits", "card_last_four"})
SENSITIVE = "[redacted]"  # a sensitive slot's value, as the call remembers it after use
# What each slot type asks the caller for: (kind of answer, number of digits if fixed).
_SLOT_EXPECTS: dict[str, tuple[Expect, int | None]] = {
    "digits": (Expect.DIGITS, None),
    "card_last_four": (Expect.DIGITS, 4),
    "phone": (Expect.PHONE, None),
    "amount": (Expect.AMOUNT, None),
    "date": (Expect.DATE, None),
    "yes_no": (Expect.YES_NO, None),
    "text": (Expect.TEXT, None),
}


@dataclass
class _Task:
    """A flow in progress."""

    flow: Flow
    slots: dict[str, Any] = field(default_factory=dict)
    confirming: bool = False

    def missing(self) -> SlotSpec | None:
        return next((s for s in self.flow.slots if s.name not in self.slots), None)


@dataclass
class _Question:
    """What the bot is waiting for, and how often it has asked."""

    kind: str  # phone | verify | slot | confirm | intent ("Did you want to ...?")
    text: str = ""  # the question as asked, said again when the caller was not understood
    attempts: int = 1
    candidate: str | None = None  # intent: the request offered back to the caller
    failed: bool = False  # a capture of this answer failed: the keypad has been offered


class DialogManager:
    def __init__(
        self,
        pack: Pack,
        classifier: IntentClassifier,
        services: Services,
        *,
        caller_id: str | None = None,
        today: date | None = None,
        llm: LLMClient | None = None,
        lockout: VerificationLockout | None = None,
    ) -> None:
        self.pack = pack
        self._classifier = classifier
        self._services = services
        self._caller_id = caller_id
        self._today = today
        self._llm = llm
        self._lockout = lockout  # failed verifications counted across calls
        self.customer_id: str | None = None
        self.verified = False
        self._tasks: list[_Task] = []  # the last one is active; earlier ones were interrupted
        self._question: _Question | None = None
        self._silences = 0
        self.policy = EscalationPolicy(pack.escalation)
        self._intents: list[str] = []  # requests routed, in order
        self._slots: dict[str, Any] = {}  # every slot filled this call
        self._done: list[str] = []  # what the bot did, as it told the caller
        self._routed: str | None = None  # this turn's request, for the policy's counters
        self._resolved = False  # this turn completed a task

    # --- Dialog protocol -----------------------------------------------------------------

    def greet(self) -> Reply:
        return Reply(self.pack.greeting, kind="greeting")

    def no_input(self) -> Reply:
        self._silences += 1
        decision = self.policy.silence()
        if decision is not None:
            return self._handoff(None, decision)
        prompts = self.pack.no_input
        last = self._silences >= len(prompts)
        text = prompts[min(self._silences, len(prompts)) - 1]
        return Reply(text, kind="reprompt", end_call=last, expects=self.expectation())

    def respond(self, turn: CallerTurn) -> Reply:
        self._silences = 0
        return self.handle_text(turn.text, turn.transcript)

    def not_understood(self, turn: CallerTurn) -> Reply:
        """Speech without usable words: say so and ask the open question again (with the
        keypad offered for a digit answer); the second such turn in a row hands off."""
        self._silences = 0
        decision = self.policy.not_understood(turn.transcript)
        if decision.action == "handoff":
            return self._handoff(None, decision)
        question = self._question
        if question is None:
            text = _join(self.pack.not_heard, self.pack.fallback.split(". ", 1)[-1])
        else:
            text = _join(self.pack.not_heard, question.text, self._keypad_hint())
            question.failed = question.failed or self._expects_digits()
        return Reply(text, kind="reprompt", decision=decision, expects=self.expectation())

    def snapshot(self) -> dict[str, Any]:
        """The dialog's state for a person taking the call over (JSON-ready)."""
        self._identify()
        waiting = " (waiting for the caller to confirm)"
        pending = [t.flow.description + (waiting if t.confirming else "") for t in self._tasks]
        return {
            "caller_id": self._caller_id,
            "customer_id": self.customer_id,
            "verified": self.verified,
            "intents": list(self._intents),
            "wants": [
                self.pack.intents[name].paraphrase
                for name in dict.fromkeys(self._intents)
                if name not in _ANSWERS | {"goodbye", "speak_to_agent"}
            ],
            "slots": {name: _plain(value) for name, value in self._slots.items()},
            "done": list(self._done),
            "pending": pending,
            "anger_total": self.policy.anger_total,
        }

    # --- turn handling -------------------------------------------------------------------

    def handle_text(self, text: str, transcript: Transcript | None = None) -> Reply:
        """Answer one caller utterance (the text REPL calls this directly)."""
        intent = self._classifier.classify(text)
        closing = self._is_closing(text, intent)
        if closing:
            intent = IntentResult("goodbye", 1.0, 1.0, intent.scores)
        answering = (
            not closing
            and self._question is not None
            and (self._parses_as_answer(text) or not self._is_new_request(intent))
        )
        signals = TurnSignals.of(text, intent, analyze(text), transcript, answering=answering)
        decision = self.policy.assess(signals)
        if decision.action == "handoff":
            return self._handoff(intent, decision)
        self._routed, self._resolved = None, False
        if decision.action != "proceed":
            reply = self._unsure(text, intent, decision)
        elif answering:
            reply = self._answer(text, intent)
        else:
            reply = self._route(intent, text)
        if reply.kind == "handoff":
            return reply
        follow = self.policy.outcome(reply.kind, self._routed, self._resolved)
        if follow is not None:
            return self._handoff(intent, follow)
        return replace(reply, decision=decision, expects=self.expectation())

    def expectation(self) -> Expectation:
        """What the open question asks for; a free request when none is open."""
        question = self._question
        if question is None:
            return Expectation()
        if question.kind in ("confirm", "intent", "readback"):
            return Expectation(Expect.YES_NO)
        if question.kind == "phone":
            return Expectation(Expect.PHONE, slot="phone", sensitive=True)
        if question.kind == "verify":
            digits = self.pack.verification.digits if self.pack.verification else None
            return Expectation(Expect.DIGITS, digits=digits, slot="verification", sensitive=True)
        slot = self._tasks[-1].missing()
        assert slot is not None  # a slot question is open only while its slot is missing
        kind, digits = _SLOT_EXPECTS.get(slot.type, (Expect.TEXT, None))
        return Expectation(kind, digits=digits, slot=slot.name, sensitive=slot.sensitive)

    def _unsure(self, text: str, intent: IntentResult, decision: Decision) -> Reply:
        """The first rung of the ladder: check with the caller instead of guessing."""
        if intent.intent == OUT_OF_SCOPE:
            answer = self._ask_llm(text)
            if answer is not None:
                self.policy.understood()
                return self._with_resume(Reply(answer, kind="answer", intent=intent))
        candidate = decision.signals.get("candidate")
        if decision.action == "confirm" and candidate in self.pack.intents:
            paraphrase = self.pack.intents[candidate].paraphrase
            asked = f"Did you want to {paraphrase}?"
            self._question = _Question("intent", text=asked, candidate=candidate)
            return Reply(asked, kind="question", intent=intent)
        return self._with_resume(Reply(self.pack.fallback, kind="fallback", intent=intent))

    def _parses_as_answer(self, text: str) -> bool:
        """A usable answer to the open question wins over whatever the intent looks like."""
        question = self._question
        assert question is not None
        if question.kind in ("confirm", "intent", "readback"):
            return self._yes_or_no(text, None) is not None
        expects = self.expectation()
        if expects.kind in (Expect.DIGITS, Expect.PHONE):
            return bool(digit_run(text).digits)  # even of the wrong length: it is re-asked
        slot = self._tasks[-1].missing()
        return parse_slot(slot.type if slot else "text", text, today=self._today) is not None

    def _is_new_request(self, intent: IntentResult) -> bool:
        """A confident request for a different task: a digression from the open question."""
        if intent.intent in _ANSWERS | {OUT_OF_SCOPE}:
            return False
        active = self._tasks[-1].flow.name if self._tasks else None
        return self.pack.intents[intent.intent].flow != active or active is None

    def _route(self, intent: IntentResult, text: str) -> Reply:
        """Serve a request the policy let through (so never out of scope)."""
        self._question = None  # a new request; an interrupted task is resumed afterwards
        spec = self.pack.intents[intent.intent]
        self._routed = intent.intent
        self._intents.append(intent.intent)
        if intent.intent == "speak_to_agent":  # reached when the caller confirmed it
            why = "the caller confirmed they want a person"
            return self._handoff(intent, self.policy.decide("handoff", "caller_request", why, {}))
        if spec.flow is None:
            kind = "farewell" if spec.end_call else "answer"
            reply = Reply(spec.response, kind=kind, intent=intent, end_call=spec.end_call)
            return reply if spec.end_call else self._with_resume(reply)
        task = _Task(self.pack.flows[spec.flow])
        self._prefill(task, text)
        self._tasks.append(task)
        return self._advance(intent)

    def _answer(self, text: str, intent: IntentResult) -> Reply:
        question = self._question
        assert question is not None
        task = self._tasks[-1] if self._tasks else None
        if question.kind == "intent":
            return self._answer_candidate(text, intent, question)
        if question.kind == "phone":
            number = parse_slot("phone", text)
            customer = self._services.find_customer(number) if number else None
            if customer is not None:
                self.customer_id = customer.id
                self._question = None
                return self._advance(intent)
            return self._reask_digits(intent, self.pack.verification.ask_phone, text, None)
        if question.kind == "verify":
            verification = self.pack.verification
            expected = verification.digits
            digits = parse_digit_slot("digits", text, expected)
            if digits is None:
                return self._reask_digits(
                    intent, verification.prompt, text, expected, reason="verification"
                )
            if self._services.verify(self.customer_id, digits):
                self.verified = True
                self._question = None
                return self._advance(intent, prefix="Thank you, you're verified.")
            if self._lockout is not None and self._lockout.failed(
                self._caller_id, self.customer_id
            ):
                return self._locked_out(intent)
            return self._reask_digits(
                intent, verification.reprompt, "", None, reason="verification"
            )
        assert task is not None
        if question.kind == "readback":
            return self._answer_readback(text, intent, task)
        if question.kind == "slot":
            slot = task.missing()
            value = self._slot_value(slot, text)
            if value is None:
                expected = _SLOT_EXPECTS.get(slot.type, (Expect.TEXT, None))[1]
                if slot.type in _DIGIT_SLOTS:
                    return self._reask_digits(intent, slot.reprompt, text, expected)
                return self._reask(intent, slot.reprompt)
            task.slots[slot.name] = value
            self._slots[slot.name] = SENSITIVE if slot.sensitive else value  # kept for the call
            if (
                question.failed
                and slot.type in _DIGIT_SLOTS
                and not slot.sensitive  # never read back
                and not self._confirms(task, slot)
            ):
                # Heard only on a second try: read it back before acting on it.
                self._question = _Question("readback", failed=True)
                self._question.text = self.pack.readback.format(value=say_digits(value))
                return Reply(self._question.text, kind="question", intent=intent)
            self._question = None
            return self._advance(intent)
        # confirmation
        yes = self._yes_or_no(text, intent)
        if yes is None:
            return self._reask(intent, self._confirmation(task))
        intent = _as_answer(intent, yes)
        if yes and self._fill_from(task, text):
            # "Yes, the one ending in 8812": the caller corrected what was being confirmed.
            self._question = _Question("confirm", text=self._confirmation(task))
            return Reply(self._question.text, kind="question", intent=intent)
        self._question = None
        if not yes:
            self._tasks.pop()
            return self._with_resume(Reply(task.flow.cancelled, kind="answer", intent=intent))
        return self._run(task, intent)

    def _answer_readback(self, text: str, intent: IntentResult, task: _Task) -> Reply:
        """The caller's answer to "I have 4 5 6 7. Is that right?". A no is the answer's
        second miss: the slot question's attempts carry on, so it goes to a person."""
        yes = self._yes_or_no(text, intent)
        slot = next(s for s in reversed(task.flow.slots) if s.name in task.slots)
        if yes is None:
            return self._reask(intent, self._question.text if self._question else slot.prompt)
        intent = _as_answer(intent, yes)
        if yes:
            self._question = None
            return self._advance(intent)
        del task.slots[slot.name]
        self._slots.pop(slot.name, None)
        self._question = _Question("slot", text=slot.prompt, attempts=2, failed=True)
        return self._reask(intent, _join(slot.reprompt, self.pack.keypad_hint))

    def _slot_value(self, slot: SlotSpec, text: str) -> Any:
        """A slot's value from the caller's words; digit slots read with their length."""
        if slot.type in _DIGIT_SLOTS:
            return parse_digit_slot(slot.type, text, _SLOT_EXPECTS[slot.type][1])
        return parse_slot(slot.type, text, today=self._today)

    def _fill_from(self, task: _Task, text: str) -> bool:
        """Slots a "yes, ..." names with a new value ("yes, the card ending in 8812", "yes,
        make it 300 dollars"): filled, and True when one changed."""
        changed = False
        for slot in task.flow.slots:
            if slot.type not in ("card_last_four", "amount") or slot.name not in task.slots:
                continue
            value = parse_slot(slot.type, text, today=self._today)
            if value is not None and value != task.slots[slot.name]:
                task.slots[slot.name] = self._slots[slot.name] = value
                changed = True
        return changed

    def _confirms(self, task: _Task, slot: SlotSpec) -> bool:
        """The flow's confirmation reads ``slot`` back anyway."""
        return task.flow.confirm is not None and "{" + slot.name + "}" in task.flow.confirm

    def _answer_candidate(self, text: str, intent: IntentResult, question: _Question) -> Reply:
        """The caller's answer to "Did you want to ...?"."""
        yes = self._yes_or_no(text, intent)
        self._question = None
        if yes is not None:
            intent = _as_answer(intent, yes)
        if not yes:
            # Still unsure what they want: the next unsure turn goes to a person.
            reply = Reply(f"Sorry about that. {self.pack.fallback}", kind="reprompt", intent=intent)
            return self._with_resume(reply)
        self.policy.understood()
        assert question.candidate is not None
        return self._route(IntentResult(question.candidate, 1.0, 1.0), text)

    def _ask_llm(self, text: str) -> str | None:
        """An FAQ-grounded answer for a question no intent covers; None without an LLM."""
        if self._llm is None or not text.strip():
            return None
        try:
            return self._llm.answer(text, self.pack.faq, self.pack.description)
        except LLMError as exc:
            log.warning("no LLM answer, using the fallback: %s", exc)
            return None

    # --- flows ---------------------------------------------------------------------------

    def _advance(self, intent: IntentResult, prefix: str = "") -> Reply:
        """Ask the next thing the active flow needs, or run it."""
        task = self._tasks[-1]
        if task.flow.verify and not self.verified:
            verification = self.pack.verification
            assert verification is not None
            self._identify()
            if self.customer_id is None:
                return self._ask("phone", intent, verification.ask_phone, prefix)
            if self._lockout is not None and self._lockout.locked(
                self._caller_id, self.customer_id
            ):
                return self._locked_out(intent)
            return self._ask("verify", intent, verification.prompt, prefix)
        slot = task.missing()
        if slot is not None:
            return self._ask("slot", intent, slot.prompt, prefix)
        if task.flow.confirm and not task.confirming:
            task.confirming = True
            return self._ask("confirm", intent, self._confirmation(task), prefix)
        return self._run(task, intent, prefix)

    def _identify(self) -> None:
        """Look the caller up by caller ID: identifies them, never verifies them."""
        if self.customer_id is None and self._caller_id:
            customer = self._services.find_customer(self._caller_id)
            self.customer_id = customer.id if customer else None

    def _run(self, task: _Task, intent: IntentResult, prefix: str = "") -> Reply:
        self._tasks.pop()
        self._identify()
        try:
            slots = task.slots | {CALLER_ID_SLOT: self._caller_id, FLOW_SLOT: task.flow.name}
            fields = ACTIONS[task.flow.action].run(self._services, self.customer_id or "", slots)
        except ServiceError as exc:
            text = f"{exc} What else can I help you with?"
            return self._with_resume(Reply(_join(prefix, text), kind="answer", intent=intent))
        values = {k: slot_for_speech(k, v) for k, v in task.slots.items()} | fields
        done = task.flow.done.format(**values)
        self._done.append(done)
        self._resolved = True
        return self._with_resume(Reply(_join(prefix, done), kind="answer", intent=intent))

    def _prefill(self, task: _Task, text: str) -> None:
        """Slots already given in the request ("block the card ending 4567") are not asked."""
        for slot in task.flow.slots:
            if slot.type in ("card_last_four", "amount"):
                value = parse_slot(slot.type, text, today=self._today)
                if value is not None:
                    task.slots[slot.name] = value
                    self._slots[slot.name] = SENSITIVE if slot.sensitive else value

    def _confirmation(self, task: _Task) -> str:
        assert task.flow.confirm is not None
        values = {k: slot_for_speech(k, v) for k, v in task.slots.items()}
        return task.flow.confirm.format(**values)

    def _with_resume(self, reply: Reply) -> Reply:
        """After a digression, come back to the interrupted flow's open question."""
        if not self._tasks or self._question is not None or reply.end_call:
            return reply
        task = self._tasks[-1]
        follow = self._advance(reply.intent or IntentResult(OUT_OF_SCOPE, 0.0, 0.0))
        text = f"{reply.text} Now, back to {task.flow.description}. {follow.text}"
        return Reply(text, kind=reply.kind, intent=reply.intent, end_call=follow.end_call)

    # --- questions -----------------------------------------------------------------------

    def _ask(self, kind: str, intent: IntentResult, text: str, prefix: str = "") -> Reply:
        self._question = _Question(kind, text=text)
        return Reply(_join(prefix, text), kind="question", intent=intent)

    def _reask_digits(
        self,
        intent: IntentResult,
        text: str,
        heard: str,
        expected: int | None,
        reason: str = "no_answer",
    ) -> Reply:
        """Ask for a digit answer again: how many digits were heard when that was the
        problem (never the digits of a sensitive answer), and the keypad offered."""
        question = self._question
        assert question is not None
        digits = digit_run(heard).digits if heard else ""
        wrong = expected is not None and digits and len(digits) != expected
        said = self.pack.wrong_length.format(heard=len(digits), expected=expected) if wrong else ""
        question.failed = True
        return self._reask(intent, _join(said, text, self.pack.keypad_hint), reason)

    def _expects_digits(self) -> bool:
        return self.expectation().kind in (Expect.DIGITS, Expect.PHONE)

    def _keypad_hint(self) -> str:
        return self.pack.keypad_hint if self._expects_digits() else ""

    def _yes_or_no(self, text: str, intent: IntentResult | None) -> bool | None:
        """The answer to the open yes/no question: the words first (agreeing with what it
        offers to do counts), the classifier when they are unclear."""
        question = self._question
        actions = offered_actions(question.text) if question else frozenset()
        yes = parse_yes_no(text, actions)
        if yes is None and intent is not None and intent.intent in _ANSWERS:
            yes = intent.intent == "affirm"
        return yes

    def _is_closing(self, text: str, intent: IntentResult) -> bool:
        """The caller is done ("no that's all, bye", misheard or not; a plain "no thanks"
        once something was done and nothing is asked), unless the words also make a
        confident request, or answer a yes/no question with yes."""
        if "goodbye" not in self.pack.intents:
            return False
        no_more = self._question is None and self.policy.served and parse_yes_no(text) is False
        if not (parse_closing(text) or no_more):
            return False
        confident = intent.confidence >= self.policy.config.min_intent_confidence
        if confident and intent.intent not in _ANSWERS | {OUT_OF_SCOPE, "goodbye"}:
            return False
        question = self._question
        if question is not None and question.kind in ("confirm", "intent", "readback"):
            return self._yes_or_no(text, None) is not True
        return True

    def _reask(self, intent: IntentResult, text: str, reason: str = "no_answer") -> Reply:
        question = self._question
        assert question is not None
        if question.attempts >= self.pack.max_attempts:
            why = f"{question.kind} question unanswered after {question.attempts} tries"
            data = {"question": question.kind, "attempts": question.attempts}
            decision = self.policy.decide("handoff", "repeated_failure", why, data)
            if reason == "verification":
                return self._handoff(intent, decision, self.pack.verification.failed)
            return self._handoff(intent, decision)
        question.attempts += 1
        return Reply(text, kind="reprompt", intent=intent)

    def _locked_out(self, intent: IntentResult) -> Reply:
        """Too many failed verifications for this caller today: a person takes over."""
        assert self._lockout is not None and self.pack.verification is not None
        why = f"verification failed {self._lockout.max_failures} times in a day for this caller"
        decision = self.policy.decide("handoff", "verification_locked", why, {})
        return self._handoff(intent, decision, self.pack.verification.failed)

    def _handoff(self, intent: IntentResult | None, decision: Decision, prefix: str = "") -> Reply:
        self._question = None
        return Reply(
            _join(prefix, self.pack.handoff),
            kind="handoff",
            intent=intent,
            end_call=True,
            decision=decision,
            context=self.snapshot(),
        )


def _as_answer(intent: IntentResult, yes: bool) -> IntentResult:
    """The turn as the dialog read it: "Yes, please send it." answers the question even when
    the classifier, which never saw the question, scored it out of scope. The transcript and
    the handoff packet show this reading; the classifier's scores are kept beside it."""
    label = "affirm" if yes else "deny"
    if intent.intent == label:
        return intent
    return IntentResult(label, 1.0, 1.0, intent.scores)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _plain(value: Any) -> Any:
    """A slot value as JSON: amounts as strings (no float rounding), dates as ISO."""
    if isinstance(value, Decimal | date):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    return value
