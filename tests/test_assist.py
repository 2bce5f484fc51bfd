"""Agent assist on a handed-off call: a verified Twilio caller (real speech, real models,
a real server on 127.0.0.1) asks for a person; the turns of the human part, recognized by
the bot's own Whisper, go to the assistant (as the softphone bridge feeds it); the agent
sees typed suggestions tied to their turns in the assist panel (headless Chromium) and
marks them used or not, which the store records. The assistant's rules are also checked
one by one with the real classifier and the demo back office."""

import asyncio
import threading
from collections.abc import Callable

import httpx
import pytest

from tests.browsers import WAIT_MS, launch
from tests.servers import Server
from tests.signin import TWILIO_TOKEN, add_user, sign_in_page, signed_in
from tests.test_bridge import reached
from voicebot.errors import HandoffError
from voicebot.handoff.assist import (
    NOT_VERIFIED,
    Assistant,
    AssistService,
    AssistState,
    AssistTurn,
)
from voicebot.pipeline.record import CallRecord, Turn
from voicebot.server import ServerConfig, create_app
from voicebot.server.twilio_peer import TwilioCall
from voicebot.services.demo_bank import DemoBank
from voicebot.store import Store, StoreWriter


def kinds(suggestions) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in suggestions:
        out.setdefault(s.kind if hasattr(s, "kind") else s["kind"], []).append(s)
    return out


def test_suggestions_follow_the_pack_the_caller_and_the_back_office(bot):
    # A back office of its own: the session's bot is shared, and other calls block cards.
    assistant = Assistant(bot.pack, bot.classifier, DemoBank())

    def say(index, role, text, state):
        return kinds(assistant.suggest(AssistTurn(index, role, text), state))

    unverified = AssistState(customer_id="c1", verified=False)
    lost = say(4, "caller", "I lost my card yesterday", unverified)
    [intent] = lost["intent"]
    assert intent.data["intent"] == "report_lost_or_stolen_card" and intent.turn == 4
    assert [c.text for c in lost["compliance"]] == [NOT_VERIFIED]
    assert lost["step"][0].text.startswith('Verify first: "For your security')
    assert "facts" not in lost  # nothing from the back office before verification

    agent = say(5, "agent", "your balance is 2,415 dollars", unverified)
    assert [c.data for c in agent["compliance"]] == [{"said": "account details"}]

    # A verified caller whose lost-card request is open (as the packet says) answers it.
    verified = AssistState(customer_id="c1", verified=True, intent="report_lost_or_stolen_card")
    card = say(6, "caller", "it's the card ending in 4567", verified)
    assert card["intent"][0].data == {
        "intent": "report_lost_or_stolen_card",
        "confidence": None,  # an answer, not a new request
        "slots": {"card_last_four": "4567"},
    }
    assert card["step"][0].text == "Confirm: Shall I block the card ending in 4567?"
    assert "card ending 4567 (active)" in card["facts"][0].text
    assert "compliance" not in card

    faq = say(7, "caller", "what's the ATM fee at other banks", verified)
    assert faq["answer"][0].text.startswith("Using another bank's ATM costs")
    upset = say(8, "caller", "this is ridiculous, my card number is 4111 1111 1111 1111", verified)
    titles = [c.title for c in upset["compliance"]]
    assert titles == ["Sensitive data", "Upset caller"]
    assert "4111" not in str(upset)  # nothing of the number in any suggestion


@pytest.fixture
def served(bot, tmp_path):
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    add_user(store, "ana", "agent")
    writer = StoreWriter(store, spool_dir=tmp_path / "spool")
    bot.handoffs, saved = writer, bot.handoffs  # the shared test bot; restored below
    config = ServerConfig(twilio_auth_token=TWILIO_TOKEN)
    app = create_app(bot, config=config, history=store, sinks=[writer], store=store)
    server = Server(app, ws_max_size=65536)
    yield store, writer, server
    server.stop()
    bot.handoffs = saved
    writer.close()
    store.close()


def verified_handoff(server: Server, store: Store, caller_audio) -> Callable[[], str]:
    """A Twilio caller who reports a lost card, verifies by keypad, then asks for a person.
    Returns once they hold for the desk (the human part happens while they are on the
    line), with their hang-up: what ends the call, and the stream's close reason."""
    lost, agent = (
        caller_audio("hi I lost my card yesterday"),
        caller_audio("can I speak to an agent please"),
    )
    done = threading.Event()
    closed: list[str] = []

    async def scenario() -> None:
        call = TwilioCall(server.url, TWILIO_TOKEN, caller_id="+15551230001")
        async with await call.start() as peer:
            await peer.wait_bot_done(quiet_s=1.0)  # consent line and greeting
            said = peer.say(lost)
            await peer.wait_bot_done(after=said.last_voiced)  # "what's the ZIP code?"
            typed = peer.tick
            await peer.press("94107#")
            await peer.wait_bot_done(after=typed)  # verified; "which card?"
            peer.say(agent)
            await asyncio.to_thread(done.wait, 600)  # held while the agent works
            await peer.stop()
            await peer.wait_closed(timeout=60)
        closed.append(peer.close_reason or "")

    call = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    call.start()
    reached(store, "holding")

    def hang_up() -> str:
        done.set()
        call.join(120)
        return closed[0]

    return hang_up


@pytest.mark.e2e
def test_the_agent_sees_suggestions_for_a_handed_off_callers_turns(served, bot, caller_audio):
    store, writer, server = served
    hang_up = verified_handoff(server, store, caller_audio)
    writer.flush()
    [row] = store.list_handoffs()
    handoff_id = row["handoff_id"]
    assert row["packet"]["verification"] == {"customer_id": "c1", "verified": True}
    after = len(store.get_call(row["call_id"])["turns"])  # the human part's turns come next

    # The human part: what the caller says, as our recognizer hears it off the line.
    said = [
        "it's the card ending in four five six seven",
        "and how much does an international transfer cost",
    ]
    heard = [bot.asr.transcribe(caller_audio(s).astype("float32")).text for s in said]
    ana = signed_in(server.url, "ana")
    base = f"/api/handoffs/{handoff_id}/assist"
    turn = {"index": 0, "role": "caller", "text": "x"}
    anonymous = httpx.post(f"{server.url}{base}/turns", json=turn)
    assert anonymous.status_code == 401

    with launch_page(server) as page:
        page.goto(f"{server.url}/agent/assist?handoff={handoff_id}")
        page.wait_for_selector("#conn.live", timeout=WAIT_MS)
        replies = [
            ana.post(f"{base}/turns", json={"index": after + i, "role": "caller", "text": text})
            for i, text in enumerate(heard)
        ]
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        first, second = (kinds(r.json()) for r in replies)
        assert first["intent"][0]["data"]["slots"] == {"card_last_four": "4567"}
        assert "card ending 4567" in first["facts"][0]["text"]  # verified: the back office
        assert second["answer"][0]["text"].startswith("International transfers cost 15 dollars")

        # The panel shows them by turn, live; the agent marks the facts used, the step not.
        facts = page.locator(f"section[data-turn='{after}'] div[data-kind=facts]")
        facts.wait_for(timeout=WAIT_MS)
        assert "card ending 4567" in facts.inner_text()
        page.locator(f"section[data-turn='{after + 1}'] div[data-kind=answer]").wait_for(
            timeout=WAIT_MS
        )
        facts.locator("button.used").click()
        page.locator(f"section[data-turn='{after}'] div[data-kind=step] button.unused").click()
        page.locator("div[data-kind=facts] .by", has_text="used by ana").wait_for(timeout=WAIT_MS)
        page.locator("div[data-kind=step] .by", has_text="not used by ana").wait_for(
            timeout=WAIT_MS
        )

    stored = {s["suggestion_id"]: s for s in store.suggestions(handoff_id)}
    assert stored[f"{after}-facts"]["used"] is True and stored[f"{after}-facts"]["used_by"] == "ana"
    assert stored[f"{after}-step"]["used"] is False
    assert stored[f"{after + 1}-answer"]["used"] is None  # shown, not acted on yet
    assert all(s["turn"] in (after, after + 1) for s in stored.values())
    listed = ana.get(base).json()
    assert {s["suggestion_id"] for s in listed} == set(stored)
    missing = ana.post(f"{base}/nope", json={"used": True})
    assert missing.status_code == 404
    ana.close()
    assert hang_up() == "stream stopped"  # the caller was on the line throughout


class launch_page:
    """A signed-in agent's page in headless Chromium (``with``: closed after)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = launch(self._playwright)
        page = self._browser.new_context().new_page()
        sign_in_page(page, self.server.url, "ana")
        return page

    def __exit__(self, *exc: object) -> None:
        self._browser.close()
        self._playwright.stop()


def test_suggestions_are_stored_masked_marked_once_per_id_and_erased_with_the_call(store):
    from tests.test_store import packet

    p = packet(call_id="call1")
    store.add_handoff(p)
    made = {
        "suggestion_id": "3-facts",
        "turn": 3,
        "kind": "facts",
        "title": "Back office",
        "text": "card 4111 1111 1111 1111",
        "data": {"note": "card 4111 1111 1111 1111"},
    }
    store.add_suggestions(p["handoff_id"], [made, made])  # the same turn sent twice
    [row] = store.suggestions(p["handoff_id"])
    assert "4111" not in row["text"] and "4111" not in str(row["data"])
    assert row["used"] is None
    marked = store.mark_suggestion(p["handoff_id"], "3-facts", True, "ana")
    assert (marked["used"], marked["used_by"]) == (True, "ana")
    store.add_suggestions(p["handoff_id"], [made])  # made again: what the agent did stays
    assert store.suggestions(p["handoff_id"])[0]["used"] is True
    with pytest.raises(HandoffError, match="no suggestion"):
        store.mark_suggestion(p["handoff_id"], "9-intent", False, "ana")
    assert store.erase(["call1"])["assist_suggestions"] == 1
    assert store.suggestions(p["handoff_id"]) == []


def test_turns_the_bridge_records_after_the_handoff_get_suggestions(bot, store):
    """The server's record sink: turns added to a handed-off call's record (the softphone
    bridge records both legs there, masked) are suggested for; the bot's part is not."""
    from tests.test_store import packet

    p = packet(call_id="call7") | {"verification": {"customer_id": "c1", "verified": False}}
    store.add_handoff(p)
    service = AssistService(None, store, bot)
    record = CallRecord(pack="bank", asr_model="tiny.en", tts_voice="joe", call_id="call7")
    record.turns.append(Turn("caller", "get me a person", 0.0, 1.0))

    async def human_part() -> None:
        service.update(record)  # no handoff yet: nothing
        record.handoff = {"handoff_id": p["handoff_id"]}
        service.update(record)  # the bot's part is behind us
        record.turns.append(Turn("bot", "Let me connect you to one of our agents.", 1.0, 3.0))
        record.turns.append(Turn("caller", "I lost my card yesterday", 5.0, 6.0, kind="bridge"))
        record.turns.append(Turn("agent", "your balance is 2,415 dollars", 7.0, 8.0, "bridge"))
        service.update(record)
        service.update(record)  # seen already: not again
        await service.idle()

    asyncio.run(human_part())
    made = {(s["turn"], s["kind"], s["title"]) for s in store.suggestions(p["handoff_id"])}
    assert made == {
        (2, "intent", "report a lost or stolen card"),
        (2, "compliance", "Not verified"),
        (2, "step", "Blocking your card"),
        (3, "compliance", "Not verified"),  # the agent gave a balance to an unverified caller
    }
