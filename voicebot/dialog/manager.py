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

Everything said is a ``Reply``; ``kind == "handoff"`` tells the pipeline to transfer.
"""

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from voicebot.dialog.actions import ACTIONS, slot_for_speech
from voicebot.dialog.base import IntentClassifier
from voicebot.dialog.llm import LLMClient, LLMError
from voicebot.dialog.pack import OUT_OF_SCOPE, Flow, Pack, SlotSpec
from voicebot.dialog.slots import parse_slot, parse_yes_no
from voicebot.events import CallerTurn, IntentResult, Reply
from voicebot.services.base import ServiceError, Services

log = logging.getLogger(__name__)

_ANSWERS = {"affirm", "deny"}


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

    kind: str  # phone | verify | slot | confirm
    attempts: int = 1


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
    ) -> None:
        self.pack = pack
        self._classifier = classifier
        self._services = services
        self._caller_id = caller_id
        self._today = today
        self._llm = llm
        self.customer_id: str | None = None
        self.verified = False
        self._tasks: list[_Task] = []  # the last one is active; earlier ones were interrupted
        self._question: _Question | None = None
        self._silences = 0

    # --- Dialog protocol -----------------------------------------------------------------

    def greet(self) -> Reply:
        return Reply(self.pack.greeting, kind="greeting")

    def no_input(self) -> Reply:
        self._silences += 1
        prompts = self.pack.no_input
        last = self._silences >= len(prompts)
        return Reply(prompts[min(self._silences, len(prompts)) - 1], kind="reprompt", end_call=last)

    def respond(self, turn: CallerTurn) -> Reply:
        self._silences = 0
        return self.handle_text(turn.text)

    # --- turn handling -------------------------------------------------------------------

    def handle_text(self, text: str) -> Reply:
        """Answer one caller utterance (the text REPL calls this directly)."""
        intent = self._classifier.classify(text)
        if self._question is not None and (
            self._parses_as_answer(text) or not self._is_new_request(intent)
        ):
            return self._answer(text, intent)
        return self._route(intent, text)

    def _parses_as_answer(self, text: str) -> bool:
        """A usable answer to the open question wins over whatever the intent looks like."""
        question = self._question
        assert question is not None
        if question.kind == "confirm":
            return parse_yes_no(text) is not None
        slot_type = {"phone": "phone", "verify": "digits"}.get(question.kind)
        if slot_type is None:
            missing = self._tasks[-1].missing()
            slot_type = missing.type if missing else "digits"
        return parse_slot(slot_type, text, today=self._today) is not None

    def _is_new_request(self, intent: IntentResult) -> bool:
        """A confident request for a different task: a digression from the open question."""
        if intent.intent in _ANSWERS | {OUT_OF_SCOPE}:
            return False
        active = self._tasks[-1].flow.name if self._tasks else None
        return self.pack.intents[intent.intent].flow != active or active is None

    def _route(self, intent: IntentResult, text: str) -> Reply:
        self._question = None  # a new request; an interrupted task is resumed afterwards
        if intent.intent == OUT_OF_SCOPE:
            answer = self._ask_llm(text)
            if answer is not None:
                return self._with_resume(Reply(answer, kind="answer", intent=intent))
            return self._with_resume(Reply(self.pack.fallback, kind="fallback", intent=intent))
        spec = self.pack.intents[intent.intent]
        if intent.intent == "speak_to_agent":
            return self._handoff(intent, "caller_request")
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
        if question.kind == "phone":
            customer = self._services.find_customer(parse_slot("phone", text) or "")
            if customer is not None:
                self.customer_id = customer.id
                self._question = None
                return self._advance(intent)
            return self._reask(intent, self.pack.verification.ask_phone)
        if question.kind == "verify":
            if self._services.verify(self.customer_id, text):
                self.verified = True
                self._question = None
                return self._advance(intent, prefix="Thank you, you're verified.")
            return self._reask(intent, self.pack.verification.reprompt, reason="verification")
        assert task is not None
        if question.kind == "slot":
            slot = task.missing()
            value = parse_slot(slot.type, text, today=self._today)
            if value is None:
                return self._reask(intent, slot.reprompt)
            task.slots[slot.name] = value
            self._question = None
            return self._advance(intent)
        # confirmation
        yes = parse_yes_no(text)
        if yes is None and intent.intent in _ANSWERS:
            yes = intent.intent == "affirm"
        if yes is None:
            return self._reask(intent, self._confirmation(task))
        self._question = None
        if not yes:
            self._tasks.pop()
            return self._with_resume(Reply(task.flow.cancelled, kind="answer", intent=intent))
        return self._run(task, intent)

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
            if self.customer_id is None and self._caller_id:
                customer = self._services.find_customer(self._caller_id)
                self.customer_id = customer.id if customer else None
            if self.customer_id is None:
                return self._ask("phone", intent, verification.ask_phone, prefix)
            return self._ask("verify", intent, verification.prompt, prefix)
        slot = task.missing()
        if slot is not None:
            return self._ask("slot", intent, slot.prompt, prefix)
        if task.flow.confirm and not task.confirming:
            task.confirming = True
            return self._ask("confirm", intent, self._confirmation(task), prefix)
        return self._run(task, intent, prefix)

    def _run(self, task: _Task, intent: IntentResult, prefix: str = "") -> Reply:
        self._tasks.pop()
        try:
            fields = ACTIONS[task.flow.action](self._services, self.customer_id or "", task.slots)
        except ServiceError as exc:
            text = f"{exc} What else can I help you with?"
            return self._with_resume(Reply(_join(prefix, text), kind="answer", intent=intent))
        values = {k: slot_for_speech(k, v) for k, v in task.slots.items()} | fields
        text = _join(prefix, task.flow.done.format(**values))
        return self._with_resume(Reply(text, kind="answer", intent=intent))

    def _prefill(self, task: _Task, text: str) -> None:
        """Slots already given in the request ("block the card ending 4567") are not asked."""
        for slot in task.flow.slots:
            if slot.type in ("card_last_four", "amount"):
                value = parse_slot(slot.type, text, today=self._today)
                if value is not None:
                    task.slots[slot.name] = value

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
        self._question = _Question(kind)
        return Reply(_join(prefix, text), kind="question", intent=intent)

    def _reask(self, intent: IntentResult, text: str, reason: str = "no_answer") -> Reply:
        question = self._question
        assert question is not None
        if question.attempts >= self.pack.max_attempts:
            if reason == "verification":
                return self._handoff(intent, "repeated_failure", self.pack.verification.failed)
            return self._handoff(intent, "repeated_failure")
        question.attempts += 1
        return Reply(text, kind="reprompt", intent=intent)

    def _handoff(self, intent: IntentResult, reason: str, prefix: str = "") -> Reply:
        self._question = None
        return Reply(
            _join(prefix, self.pack.handoff),
            kind="handoff",
            intent=intent,
            end_call=True,
            reason=reason,
        )


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)
