"""The agent desktop against a real uvicorn server on 127.0.0.1 and a real SQLite store:
the HTTP API, the live event stream, and headless Chromium watching a phone call (a
faithful Twilio peer on the server's media stream) escalate, then claiming its card."""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI

from tests.browsers import launch
from tests.servers import Server
from voicebot.handoff.desk import desk_router
from voicebot.server import create_app
from voicebot.server.twilio_peer import TwilioPeer
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
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    app = FastAPI()
    app.include_router(desk_router(store, poll_s=0.1))
    server = Server(app)
    yield store, server.url
    server.stop()
    store.close()


def test_api_claim_race_close_and_errors(desk):
    store, url = desk
    store.add_handoff(packet("h1"))
    with httpx.Client(base_url=url, timeout=10) as client:
        assert [c["handoff_id"] for c in client.get("/api/handoffs").json()] == ["h1"]
        with ThreadPoolExecutor(6) as pool:
            codes = list(
                pool.map(
                    lambda a: client.post("/api/handoffs/h1/claim", json={"agent": a}).status_code,
                    [f"agent{i}" for i in range(6)],
                )
            )
        assert sorted(codes) == [200] + [409] * 5
        holder = client.get("/api/handoffs/h1").json()["agent"]
        other = "agent0" if holder != "agent0" else "agent1"
        assert (
            client.post(
                "/api/handoffs/h1/close", json={"agent": holder, "disposition": "nope"}
            ).status_code
            == 422
        )
        refused = client.post(
            "/api/handoffs/h1/close", json={"agent": other, "disposition": "resolved"}
        )
        assert (
            refused.status_code == 409
            and "only the agent who claimed it" in refused.json()["detail"]
        )
        closed = client.post(
            "/api/handoffs/h1/close", json={"agent": holder, "disposition": "resolved"}
        )
        assert closed.json()["status"] == "closed"
        assert client.get("/api/handoffs/nope").status_code == 404
        assert client.post("/api/handoffs/nope/claim", json={"agent": "x"}).status_code == 404
        assert client.post("/api/handoffs/h1/claim", json={"agent": ""}).status_code == 422
        assert client.get("/api/handoffs?status=closed").json()[0]["disposition"] == "resolved"


def test_event_stream_sends_the_queue_then_changes(desk):
    store, url = desk
    store.add_handoff(packet("h1"))
    events = []
    client = httpx.Client(base_url=url, timeout=10)
    with client, client.stream("GET", "/api/handoffs/stream") as stream:
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
    assert events[0][0] == "snapshot" and [c["handoff_id"] for c in events[0][1]] == ["h1"]
    assert events[1][1]["handoff_id"] == "h2" and events[1][1]["reason"] == "negative_sentiment"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = launch(p)
        yield instance
        instance.close()


@pytest.fixture
def served(bot, tmp_path):
    """What ``voicebot serve`` runs: calls, the store, the desk, in one real server."""
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    writer = StoreWriter(store, spool_dir=tmp_path / "spool")
    bot.handoffs = writer  # the shared test bot; restored below
    app = create_app(bot, history=store, sinks=[writer], routers=[desk_router(store)])
    server = Server(app)
    yield store, server
    server.stop()
    bot.handoffs = None
    writer.close()
    store.close()


@pytest.mark.e2e
def test_phone_call_escalates_and_the_card_appears_live(served, browser, caller_audio):
    store, server = served
    page = browser.new_page()
    page.goto(f"{server.url}/agent")
    page.wait_for_selector("#conn.live")
    assert "No handoffs waiting" in page.inner_text("#queue")  # an empty queue is fine

    async def phone_call():
        """A Twilio caller: a request, then an angry demand for a person."""
        async with TwilioPeer(f"{server.ws_url}/twilio/media", caller_id="+15551230001") as peer:
            await peer.wait_bot_done()  # the greeting
            said = peer.say(caller_audio("I was charged twice at a restaurant"))
            await peer.wait_bot_done(after=said.last_voiced)
            peer.say(caller_audio("this is useless, get me a real person"))
            await peer.wait_closed(timeout=60)  # after the transfer message
            closed.append((peer.close_code, peer.close_reason))

    closed: list[tuple[int, str]] = []
    call = threading.Thread(target=asyncio.run, args=(phone_call(),), daemon=True)
    call.start()
    # Re-rendering replaces elements, so the test reads through locators, never handles.
    card = page.locator("article[data-status=queued]")
    card.wait_for(timeout=120_000)  # the card arrives by the event stream: no reload
    call.join(60)
    assert closed == [(1000, "call ended by handoff")]
    text = card.inner_text()
    assert "Wants: dispute a wrong charge" in text and "+15551230001" in text
    assert card.locator(".badge").inner_text() in ("asked for a person", "upset caller")
    [row] = store.list_handoffs()
    assert store.get_call(row["call_id"])["ended_by"] == "handoff"

    # Claiming: agent ana takes it; bob, on another page, sees it taken.
    page.fill("#agent", "ana")
    page.dispatch_event("#agent", "change")
    card.locator("button.claim").click()
    page.locator("article[data-status=claimed]", has_text="claimed by ana").wait_for()
    other = browser.new_page()
    other.goto(f"{server.url}/agent")
    taken = other.locator("article[data-status=claimed]")
    taken.wait_for()
    assert "claimed by ana" in taken.inner_text() and taken.locator("button.claim").count() == 0
    # ana closes it with a disposition; it leaves the open queue.
    page.select_option("article select.disposition", "resolved")
    page.click("article button.close")
    page.locator("text=No handoffs waiting").wait_for()
    row = store.list_handoffs()[0]
    assert (row["status"], row["agent"], row["disposition"]) == ("closed", "ana", "resolved")


def test_unicode_and_long_turns_render_as_text(desk, browser):
    store, url = desk
    long_turn = "ça coûte 💳 " * 500
    store.add_handoff(packet("h9", text=f"<script>window.hacked=1</script>{long_turn}"))
    page = browser.new_page()
    page.goto(f"{url}/agent")
    card = page.locator("article[data-id=h9]")
    card.locator("details summary").click()
    assert "<script>window.hacked=1</script>" in card.inner_text()  # shown, not run
    assert page.evaluate("window.hacked") is None
    assert "💳" in card.inner_text()
