"""The agent desktop against a real uvicorn server on 127.0.0.1 and a real SQLite store:
the HTTP API, the live event stream, and headless Chromium watching a phone call (a
faithful Twilio peer on the server's media stream) escalate, then claiming its card.
Agents sign in for real (users in the store, ``POST /auth/login`` or the sign-in page)."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fakes import NoCalls
from tests.servers import Server
from tests.signin import SIGN_IN_PAGE, TWILIO_TOKEN, add_user, sign_in_page, signed_in
from voicebot.server import ServerConfig, create_app
from voicebot.server.twilio_peer import TwilioCall
from voicebot.store import Store, StoreWriter


def packet(handoff_id, reason="caller_request", text="I want a person"):
    return {
        "handoff_id": handoff_id,
        "call_id": f"call-{handoff_id}",
        "caller_id": "+15551230001",
        "reason": reason,
        "explanation": "the caller asked for a person",
        "summary": "Wants: dispute a wrong charge.\nIdentity: matched customer c1, NOT verified.",
        "slots": {"card_last_four": "4567"},
        "verification": {"customer_id": "c1", "verified": False},
        "transcript": [{"role": "caller", "text": text, "start": 1.0, "end": 2.0}],
    }


@pytest.fixture
def desk(tmp_path):
    """The desk as ``voicebot serve`` mounts it (sign-in, gate and all), no calls."""
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    for name in ("ana", "bob", *(f"agent{i}" for i in range(6))):
        add_user(store, name, "agent")
    server = Server(create_app(NoCalls(), store=store))
    yield store, server.url
    server.stop()
    store.close()


def test_api_claim_race_close_and_errors(desk):
    store, url = desk
    store.add_handoff(packet("h1"))
    agents = {f"agent{i}": signed_in(url, f"agent{i}") for i in range(6)}
    client = agents["agent0"]
    assert [c["handoff_id"] for c in client.get("/api/handoffs").json()] == ["h1"]
    with ThreadPoolExecutor(6) as pool:
        codes = list(
            pool.map(lambda c: c.post("/api/handoffs/h1/claim").status_code, agents.values())
        )
    assert sorted(codes) == [200] + [409] * 5
    holder = client.get("/api/handoffs/h1").json()["agent"]
    other = agents["agent0" if holder != "agent0" else "agent1"]
    mine = agents[holder]
    assert mine.post("/api/handoffs/h1/close", json={"disposition": "nope"}).status_code == 422
    refused = other.post("/api/handoffs/h1/close", json={"disposition": "resolved"})
    assert refused.status_code == 409
    assert "only the agent who claimed it" in refused.json()["detail"]
    # The agent is who is signed in: a name in the body changes nothing.
    spoofed = other.post("/api/handoffs/h1/close", json={"agent": holder, "disposition": "other"})
    assert spoofed.status_code == 409
    closed = mine.post("/api/handoffs/h1/close", json={"disposition": "resolved"})
    assert closed.json()["status"] == "closed" and closed.json()["agent"] == holder
    assert client.get("/api/handoffs/nope").status_code == 404
    assert client.post("/api/handoffs/nope/claim").status_code == 404
    assert client.get("/api/handoffs?status=closed").json()[0]["disposition"] == "resolved"
    # Who did what is in the audit log.
    entries = [(e["actor"], e["action"]) for e in store.list_audit(call_id="call-h1")]
    assert (holder, "claimed") in entries and (holder, "closed") in entries
    assert ("agent0", "viewed") in entries  # its GET /api/handoffs/h1
    for c in agents.values():
        c.close()


def test_claims_take_the_agent_from_the_session_and_need_the_csrf_token(desk):
    store, url = desk
    store.add_handoff(packet("h2"))
    ana = signed_in(url, "ana")
    claimed = ana.post("/api/handoffs/h2/claim", json={"agent": "mallory"})
    assert claimed.status_code == 200 and claimed.json()["agent"] == "ana"
    token = ana.headers.pop("X-CSRF-Token")
    no_csrf = ana.post("/api/handoffs/h2/close", json={"disposition": "resolved"})
    wrong = ana.post(
        "/api/handoffs/h2/close",
        json={"disposition": "resolved"},
        headers={"X-CSRF-Token": token[:-1] + ("A" if token[-1] != "A" else "B")},
    )
    ana.close()
    assert no_csrf.status_code == wrong.status_code == 403
    assert "X-CSRF-Token" in no_csrf.json()["detail"]
    assert store.get_handoff("h2")["status"] == "claimed"  # neither went through
    anonymous = httpx.post(f"{url}/api/handoffs/h2/claim", timeout=10)
    assert anonymous.status_code == 401


def test_event_stream_sends_the_queue_then_changes(desk):
    store, url = desk
    store.add_handoff(packet("h1"))
    events = []
    client = signed_in(url, "ana")
    with client.stream("GET", "/api/handoffs/stream") as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
                data = json.loads(next(lines).split(":", 1)[1])
                events.append((kind, data))
                if kind == "snapshot":
                    store.add_handoff(packet("h2", reason="negative_sentiment"))
                if kind == "handoff":
                    break
    client.close()
    assert events[0][0] == "snapshot" and [c["handoff_id"] for c in events[0][1]] == ["h1"]
    assert events[1][1]["handoff_id"] == "h2" and events[1][1]["reason"] == "negative_sentiment"


@pytest.fixture
def served(bot, tmp_path):
    """What ``voicebot serve`` runs: calls, the store, the desk, in one real server."""
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    add_user(store, "ana", "agent")
    add_user(store, "bob", "agent")
    writer = StoreWriter(store, spool_dir=tmp_path / "spool")
    bot.handoffs = writer  # the shared test bot; restored below
    config = ServerConfig(twilio_auth_token=TWILIO_TOKEN)
    app = create_app(bot, config=config, history=store, sinks=[writer], store=store)
    server = Server(app)
    yield store, server
    server.stop()
    bot.handoffs = None
    writer.close()
    store.close()


@pytest.mark.e2e
def test_phone_call_escalates_and_the_card_appears_live(served, browser, caller_audio):
    store, server = served
    page = browser.new_context().new_page()
    sign_in_page(page, server.url, "ana")
    page.wait_for_selector("#conn.live")
    assert page.inner_text("#me") == "ana (agent)"
    assert "No handoffs waiting" in page.inner_text("#queue")  # an empty queue is fine

    async def phone_call():
        """A Twilio caller: a request, then an angry demand for a person."""
        twilio = TwilioCall(server.url, TWILIO_TOKEN, caller_id="+15551230001")
        async with await twilio.start() as peer:
            await peer.wait_bot_done()  # the greeting
            said = peer.say(caller_audio("I was charged twice at a restaurant"))
            await peer.wait_bot_done(after=said.last_voiced)
            peer.say(caller_audio("this is useless, get me a real person"))
            await peer.wait_closed(timeout=600)  # held until the agent closes the card
            closed.append((peer.close_code, peer.close_reason))
        await twilio.follow()  # what Twilio asks once the stream has ended
        continued.extend(v.name for v in twilio.verbs)

    closed: list[tuple[int, str]] = []
    continued: list[str] = []
    call = threading.Thread(target=asyncio.run, args=(phone_call(),), daemon=True)
    call.start()
    # Re-rendering replaces elements, so the test reads through locators, never handles.
    card = page.locator("article[data-status=queued]")
    card.wait_for(timeout=120_000)  # the card arrives by the event stream: no reload
    text = card.inner_text()
    assert "Wants: dispute a wrong charge" in text and "+15551230001" in text
    assert card.locator(".badge").inner_text() in ("asked for a person", "upset caller")
    [row] = store.list_handoffs()

    # Claiming: agent ana (signed in above) takes it; bob, signed in elsewhere, sees it taken.
    card.locator("button.claim").click()
    page.locator("article[data-status=claimed]", has_text="claimed by ana").wait_for()
    other = browser.new_context().new_page()
    sign_in_page(other, server.url, "bob")
    taken = other.locator("article[data-status=claimed]")
    taken.wait_for()
    assert "claimed by ana" in taken.inner_text() and taken.locator("button.claim").count() == 0
    # ana closes it with a disposition; it leaves the open queue.
    page.select_option("article select.disposition", "resolved")
    page.click("article button.close")
    page.locator("text=No handoffs waiting").wait_for()
    call.join(120)  # closing the card hung up on the caller held on the line
    assert closed == [(1000, "call ended by handoff")]
    assert continued == ["Hangup"]  # the desk had the caller: not sent on, no callback offer
    row = store.list_handoffs()[0]
    assert store.get_call(row["call_id"])["ended_by"] == "handoff"
    assert (row["status"], row["agent"], row["disposition"]) == ("closed", "ana", "resolved")
    actions = [(e["actor"], e["action"]) for e in store.list_audit(call_id=row["call_id"])]
    assert actions == [("ana", "claimed"), ("ana", "closed")]  # no microphone: not answered
    # Signing out ends the session: the desk sends the agent back to the sign-in page.
    page.click("#signout")
    page.wait_for_url(SIGN_IN_PAGE)
    page.goto(f"{server.url}/agent")
    page.wait_for_url(SIGN_IN_PAGE)


def test_unicode_and_long_turns_render_as_text(desk, browser):
    store, url = desk
    long_turn = "ça coûte 💳 " * 500
    store.add_handoff(packet("h9", text=f"<script>window.hacked=1</script>{long_turn}"))
    page = browser.new_context().new_page()
    sign_in_page(page, url, "ana")
    card = page.locator("article[data-id=h9]")
    card.locator("details summary").click()
    assert "<script>window.hacked=1</script>" in card.inner_text()  # shown, not run
    assert page.evaluate("window.hacked") is None
    assert "💳" in card.inner_text()
