"""Agent assist: while a person talks with a handed-off caller, suggestions for the agent.

Each transcript turn of the human part (the caller's or the agent's, from whatever source
hears the call: the desktop's softphone bridge, or a client posting turns) goes through
``Assistant.suggest`` with the pack and what is known of the caller (``AssistState``, from
the handoff packet). Out come typed ``Suggestion``s, each tied to the turn that produced it:

- ``intent``: what the caller wants (the bot's own classifier) and the slots heard;
- ``answer``: the pack's answer to it (an intent's static response, or the closest FAQ fact);
- ``step``: where the pack's flow for it stands (verify first, the next question, confirm);
- ``facts``: back-office facts for a *verified* caller (accounts, cards, transactions, the
  payment due), chosen by what the flow does;
- ``compliance``: prompts the agent must not miss ("caller not verified: verify before
  account details", sensitive data said aloud, an upset caller, account details given to an
  unverified caller).

``AssistService`` runs it off the event loop, keeps every suggestion in the store
(``assist_suggestions``, masked) and records whether the agent used each one;
``assist_router`` gives the desk its agent-only routes: the suggestions of a handoff, their
event stream, marking one used or not, and posting a turn. ``/agent/assist`` is the panel.
"""

import asyncio
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from voicebot.auth import audit
from voicebot.dialog.actions import say_money
from voicebot.dialog.intent_classifier import IntentClassifier
from voicebot.dialog.pack import OUT_OF_SCOPE, Flow, Pack
from voicebot.dialog.slots import parse_slot
from voicebot.errors import HandoffError
from voicebot.handoff import sentiment
from voicebot.pipeline.record import CallRecord
from voicebot.privacy.redact import PII, redact
from voicebot.server.access import add_page, allow, signed_in, signed_in_principal
from voicebot.server.limits import Budget
from voicebot.server.streams import follow, open_stream, sse
from voicebot.services.base import Services
from voicebot.store.store import Store, UnknownHandoffError

if TYPE_CHECKING:
    from voicebot.pipeline.bot import Bot

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
AGENTS = signed_in("agent")
Kind = Literal["intent", "answer", "step", "facts", "compliance"]
Role = Literal["caller", "agent"]

_KEEP_CALLS = 1000  # handed-off calls followed at once; the oldest are forgotten
FAQ_MIN_SIMILARITY = 0.5  # cosine of MiniLM embeddings: below it a fact is off-topic
NOT_VERIFIED = "Caller not verified: verify their identity before giving account details."
# What each flow's action touches in the back office: the facts worth having on screen.
_FACTS_FOR_ACTION = {
    "balances": ("accounts",),
    "transfer_to_savings": ("accounts",),
    "pay_credit_card": ("accounts", "payment_due"),
    "payment_due": ("payment_due",),
    "transactions": ("transactions",),
    "block_card": ("cards",),
    "activate_card": ("cards",),
    "report_fraud": ("cards", "transactions"),
}
_DEFAULT_FACTS = ("accounts", "cards")
_SENSITIVE = frozenset({PII.CARD, PII.SECURITY_CODE, PII.SSN, PII.NATIONAL_ID, PII.ACCOUNT})
_MASKED_SENSITIVE = re.compile(r"\[(card number|card ending \d{4}|security code|SSN|ID number)")
# An agent turn that gives account details: money, balances, card endings, transactions.
_ACCOUNT_DETAILS = re.compile(
    r"\b(balance|dollars?|\$\s?\d|available credit|statement|transactions?|ending in)\b", re.I
)


@dataclass(frozen=True)
class AssistTurn:
    """One turn of the human part: ``index`` is its place in the call's transcript."""

    index: int
    role: Role
    text: str


@dataclass(frozen=True)
class Suggestion:
    """What the agent is shown; ``turn`` is the transcript turn that produced it."""

    suggestion_id: str  # "<turn>-<kind>": unique within a handoff
    turn: int
    kind: Kind
    title: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AssistState:
    """What is known of the caller: from the packet, then from the turns of the human part."""

    customer_id: str | None = None
    verified: bool = False
    slots: dict[str, Any] = field(default_factory=dict)
    intent: str | None = None  # the caller's latest request that a flow serves

    @classmethod
    def from_packet(cls, packet: dict[str, Any], pack: Pack) -> "AssistState":
        verification = packet.get("verification") or {}
        said = packet.get("intents") or []
        tasks = [i for i in said if i in pack.intents and pack.intents[i].flow]
        return cls(
            customer_id=verification.get("customer_id"),
            verified=bool(verification.get("verified")),
            slots=dict(packet.get("slots") or {}),
            intent=tasks[-1] if tasks else None,
        )


class Assistant:
    """``suggest(turn, state)``: a turn's suggestions. Model compute: call it off the loop."""

    def __init__(self, pack: Pack, classifier: IntentClassifier, services: Services) -> None:
        self.pack = pack
        self.classifier = classifier
        self.services = services
        self._faq = np.zeros((0, 0), np.float32)
        self._faq_lock = threading.Lock()

    @classmethod
    def for_bot(cls, bot: "Bot") -> "Assistant":
        """The bot's own pack, classifier and back office: what the bot knew, the agent sees."""
        return cls(bot.pack, bot.classifier, bot.services)

    def suggest(self, turn: AssistTurn, state: AssistState) -> list[Suggestion]:
        out: list[Suggestion] = []

        def add(kind: Kind, title: str, text: str, **data: Any) -> None:
            """One suggestion of this turn (ids stay stable if the turn is sent again)."""
            n = sum(s.kind == kind for s in out)
            sid = f"{turn.index}-{kind}" + (f"-{n + 1}" if n else "")
            out.append(Suggestion(sid, turn.index, kind, title, text, data))

        found = redact(turn.text)
        if {f.kind for f in found.findings} & _SENSITIVE or _MASKED_SENSITIVE.search(turn.text):
            add(
                "compliance",
                "Sensitive data",
                "Card or ID numbers were said: never read them back; use the last four only.",
            )
        if turn.role == "agent":
            if not state.verified and _ACCOUNT_DETAILS.search(found.text):
                add("compliance", "Not verified", NOT_VERIFIED, said="account details")
            return out
        mood = sentiment.analyze(turn.text.lower())
        if mood.angry:
            add(
                "compliance",
                "Upset caller",
                "Acknowledge the problem and apologize before going on.",
                cues=list(mood.cues),
            )
        # An answer to the open task's question (the card's last four) belongs to it.
        heard = self._slots(turn.text, self._flow_of(state.intent), state)
        if heard and state.intent is not None:
            intent, confidence, sure = self.pack.intents[state.intent], None, "answers"
        else:
            result = self.classifier.classify(turn.text)
            if result.intent == OUT_OF_SCOPE:
                self._answer_from_faq(turn.text, add)
                return out
            intent, confidence = self.pack.intents[result.intent], round(result.confidence, 3)
            sure = f"{result.confidence:.0%} sure"
            if intent.flow:
                state.intent = intent.name
                heard = self._slots(turn.text, self._flow_of(intent.name), state)
        flow = self._flow_of(intent.name)
        add(
            "intent",
            intent.paraphrase or intent.name.replace("_", " "),
            sure + "".join(f"; {k.replace('_', ' ')}: {v}" for k, v in heard.items()),
            intent=intent.name,
            confidence=confidence,
            slots=heard,
        )
        if intent.response and flow is None:
            add("answer", "Answer", intent.response, source="intent")
        else:
            self._answer_from_faq(turn.text, add)
        if flow is None:
            return out
        if flow.verify and not state.verified:
            add("compliance", "Not verified", NOT_VERIFIED, flow=flow.name)
        add("step", flow.description.capitalize(), self._next_step(flow, state), flow=flow.name)
        if state.verified and state.customer_id:
            facts = self._facts(state.customer_id, flow)
            if facts:
                add("facts", "Back office", "; ".join(facts.values()), **facts)
        return out

    def _flow_of(self, intent: str | None) -> Flow | None:
        flow = self.pack.intents[intent].flow if intent in self.pack.intents else None
        return self.pack.flows.get(flow) if flow else None

    def _slots(self, text: str, flow: Flow | None, state: AssistState) -> dict[str, Any]:
        """The flow's slots this turn fills (sensitive ones only as ``[redacted]``)."""
        heard: dict[str, Any] = {}
        for spec in flow.slots if flow else ():
            value = parse_slot(spec.type, text)
            if value is not None:
                heard[spec.name] = "[redacted]" if spec.sensitive else str(value)
        state.slots.update(heard)
        return heard

    def _next_step(self, flow: Flow, state: AssistState) -> str:
        if flow.verify and not state.verified:
            verification = self.pack.verification
            return "Verify first" + (f': "{verification.prompt}"' if verification else ".")
        for spec in flow.slots:
            if spec.name not in state.slots:
                return f'Ask: "{spec.prompt}"'
        if flow.confirm:
            return "Confirm: " + flow.confirm.format_map(_Known(state.slots))
        return f"Do it: {flow.description}."

    def _facts(self, customer_id: str, flow: Flow) -> dict[str, str]:
        """Back-office facts the flow touches, in words."""
        facts: dict[str, str] = {}
        for group in _FACTS_FOR_ACTION.get(flow.action, _DEFAULT_FACTS):
            if group == "accounts":
                accounts = self.services.accounts(customer_id)
                facts[group] = ", ".join(f"{a.kind} {say_money(a.balance)}" for a in accounts)
            elif group == "cards":
                cards = self.services.cards(customer_id)
                facts[group] = ", ".join(
                    f"{c.kind} card ending {c.last_four} ({c.status})" for c in cards
                )
            elif group == "transactions":
                rows = self.services.transactions(customer_id)
                facts[group] = ", ".join(f"{t.day:%b %d} {t.merchant} {t.amount}" for t in rows)
            elif group == "payment_due":
                due = self.services.payment_due(customer_id)
                facts[group] = f"due {due.due:%b %d}, minimum {say_money(due.minimum)}"
        return {k: v for k, v in facts.items() if v}

    def _answer_from_faq(self, text: str, add: Callable[..., None]) -> None:
        """The pack's FAQ fact closest in meaning to the turn, if close enough."""
        if not self.pack.faq:
            return
        embedder = self.classifier.embedder
        with self._faq_lock:
            if self._faq.shape[0] != len(self.pack.faq):
                self._faq = embedder.embed(list(self.pack.faq))
            facts = self._faq
        scores = facts @ embedder.embed([text])[0]
        best = int(np.argmax(scores))
        score = round(float(scores[best]), 3)
        if score >= FAQ_MIN_SIMILARITY:
            add("answer", "FAQ", self.pack.faq[best], source="faq", score=score)


class _Known(dict):
    """``format_map`` that leaves unknown placeholders as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class AssistService:
    """Suggestions for the turns of handed-off calls, kept in the store.

    Fed two ways: as a ``RecordSink`` of the server it sees every turn added to a call
    record after its handoff (the softphone bridge records both legs there), and
    ``on_turn`` takes a turn from anywhere else (``POST .../assist/turns``)."""

    def __init__(self, assistant: Assistant | None, store: Store, bot: "Bot | None" = None) -> None:
        """``assistant`` (or the ``bot`` to build one from when first needed)."""
        self._assistant = assistant
        self._bot = bot
        self.store = store
        self._states: OrderedDict[str, AssistState] = OrderedDict()  # by handoff id
        self._lock = asyncio.Lock()
        # call id -> turns of its record already looked at (the newest calls only)
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    def update(self, record: CallRecord) -> None:
        """``RecordSink``: the caller's and agent's turns added after the handoff (on the
        event loop, like every sink; the suggestions are made in the background). Never
        raises: a sink's error would reach the call."""
        if record.handoff is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.error("agent assist: a record update off the event loop, skipped")
            return
        seen = self._seen.setdefault(record.call_id, len(record.turns))  # the bot's part
        self._seen[record.call_id] = len(record.turns)
        self._seen.move_to_end(record.call_id)
        while len(self._seen) > _KEEP_CALLS:
            self._seen.popitem(last=False)
        handoff_id = record.handoff["handoff_id"]
        for index in range(seen, len(record.turns)):
            turn = record.turns[index]
            if turn.role in ("caller", "agent") and turn.text and not turn.dropped:
                role: Role = "caller" if turn.role == "caller" else "agent"
                task = loop.create_task(self._feed(handoff_id, AssistTurn(index, role, turn.text)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _feed(self, handoff_id: str, turn: AssistTurn) -> None:
        try:
            await self.on_turn(handoff_id, turn)
        except Exception:  # assist must never disturb the call it helps with
            log.exception("agent assist failed on turn %d of handoff %s", turn.index, handoff_id)

    async def idle(self) -> None:
        """Until the suggestions of every turn seen so far are made and stored."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def assistant(self) -> Assistant:
        if self._assistant is None:
            if self._bot is None:
                raise HandoffError("agent assist needs the bot's models")
            self._assistant = Assistant.for_bot(self._bot)
        return self._assistant

    async def on_turn(self, handoff_id: str, turn: AssistTurn) -> list[Suggestion]:
        """Suggest for one turn of the handoff's call, store the suggestions, return them.
        Turns of one call are taken one at a time (the state moves with them)."""
        async with self._lock:
            state = self._states.get(handoff_id)
            if state is None:
                row = await asyncio.to_thread(self.store.get_handoff, handoff_id)
                pack = self.assistant().pack
                state = self._states[handoff_id] = AssistState.from_packet(row["packet"], pack)
                while len(self._states) > _KEEP_CALLS:
                    self._states.popitem(last=False)
            made = await asyncio.to_thread(self.assistant().suggest, turn, state)
            await asyncio.to_thread(
                self.store.add_suggestions, handoff_id, [asdict(s) for s in made]
            )
        return made


class TurnIn(BaseModel):
    index: int = Field(ge=0, le=100_000)
    role: Role
    text: str = Field(min_length=1, max_length=2000)


class UsedIn(BaseModel):
    used: bool


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A stored suggestion as the desk gets it."""
    keys = ("suggestion_id", "turn", "kind", "title", "text", "data", "used", "used_by")
    return {k: row[k] for k in keys}


def assist_router(service: AssistService, *, poll_s: float = 0.25, streams: Budget) -> APIRouter:
    """The agent-only routes of agent assist (every one behind sign-in, role agent)."""
    router = APIRouter()
    store = service.store
    add_page(router, "/agent/assist", STATIC / "assist.html", signed_in("agent", page=True))
    add_page(router, "/agent/assist.js", STATIC / "assist.js", AGENTS)
    add_page(router, "/agent/assist.css", STATIC / "assist.css", AGENTS)

    def known(handoff_id: str) -> dict[str, Any]:
        try:
            return store.get_handoff(handoff_id)
        except UnknownHandoffError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.get("/api/handoffs/{handoff_id}/assist")
    @allow(AGENTS)
    def suggestions(handoff_id: str, request: Request) -> list[dict[str, Any]]:
        row = known(handoff_id)
        who = signed_in_principal(request)
        audit(store, who, "viewed", "handoff", handoff_id, {"assist": True}, call_id=row["call_id"])
        return [shown(r) for r in store.suggestions(handoff_id)]

    @router.post("/api/handoffs/{handoff_id}/assist/turns")
    @allow(AGENTS)
    async def turn(handoff_id: str, body: TurnIn) -> list[dict[str, Any]]:
        """A transcript turn from a source outside this process; its suggestions."""
        await asyncio.to_thread(known, handoff_id)
        made = await service.on_turn(handoff_id, AssistTurn(body.index, body.role, body.text))
        return [asdict(s) for s in made]

    @router.post("/api/handoffs/{handoff_id}/assist/{suggestion_id}")
    @allow(AGENTS)
    def mark(handoff_id: str, suggestion_id: str, body: UsedIn, request: Request) -> dict:
        """Whether the agent used it; who and when are kept on the suggestion."""
        who = signed_in_principal(request)
        known(handoff_id)
        try:
            marked = store.mark_suggestion(handoff_id, suggestion_id, body.used, who.name)
        except HandoffError as exc:
            raise HTTPException(404, str(exc)) from exc
        return shown(marked)

    @router.get("/api/handoffs/{handoff_id}/assist/stream")
    @allow(AGENTS)
    async def stream(handoff_id: str, request: Request) -> StreamingResponse:
        await asyncio.to_thread(known, handoff_id)
        return await open_stream(
            streams, "event streams are open", _events(store, handoff_id, request, poll_s)
        )

    return router


async def _events(
    store: Store, handoff_id: str, request: Request, poll_s: float
) -> AsyncIterator[str]:
    """Every suggestion so far, then each new or changed one (used, not used)."""
    since = 0.0

    async def changes() -> list[str]:
        nonlocal since
        rows = await asyncio.to_thread(store.suggestions, handoff_id, since)
        since = max([since, *(r["updated_at"] for r in rows)])
        return [sse("suggestion", shown(r)) for r in rows]

    for event in await changes():
        yield event
    async for event in follow(request, poll_s, changes):
        yield event
