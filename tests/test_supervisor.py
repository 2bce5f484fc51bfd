"""The supervisor view: alerts from real call records and scorecards (the labelled QA calls,
``eval/qa/calls``), the live board following the database of several workers (SQLite and
PostgreSQL), alert webhooks through the outbox to a real receiver, the API's ranges, and
headless Chromium on a real ``voicebot serve`` signed in for real, while a real Twilio call
(the faithful peer, real models) comes in, gets angry and waits in the queue.

Set ``VOICEBOT_SCREENSHOTS=$PWD/docs/img`` to keep the page's screenshots (docs/deployment.md)."""

import asyncio
import json
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.browsers import WAIT_MS, screenshot
from tests.fakes import NoCalls
from tests.servers import PhoneCall, Receiver, Server, Worker, wait_for
from tests.signin import TWILIO_TOKEN, add_user, sign_in_page, signed_in
from voicebot.handoff.service import HandoffConfig, HandoffService
from voicebot.handoff.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDispatcher, verify
from voicebot.qa.alerts import (
    AlertConfig,
    AlertMonitor,
    queue_alerts,
    record_alerts,
    scorecard_alert,
)
from voicebot.qa.form import load_qa
from voicebot.qa.kpis import call_intent, kpi_report
from voicebot.qa.scorecard import score_call
from voicebot.server import create_app
from voicebot.server.supervisor import LiveBoard
from voicebot.store import Store
from voicebot.store.schema import alert_outbox

CALLS = Path(__file__).parent.parent / "eval" / "qa" / "calls"
SECRET = "alert-secret"


def eval_call(name: str) -> dict:
    return json.loads((CALLS / f"{name}.json").read_text())


def live(record: dict, call_id: str, turns: int) -> dict:
    """The call as it was ``turns`` turns in: still going."""
    return record | {"call_id": call_id, "ended_by": None, "turns": record["turns"][:turns]}


# --- the alert rules ---------------------------------------------------------------------


def test_alerts_from_real_call_records_and_scorecards():
    config = AlertConfig()
    [angry] = record_alerts(eval_call("real-bank-angry-fees"), config, 100.0)
    assert (angry.kind, angry.alert_id) == ("angry_caller", "angry_caller:1442b0a0e303")
    assert "“ridiculous”" in angry.message and angry.detail["turn"] == 1
    assert angry.detail["anger"] >= config.anger and angry.created_at == 100.0
    [stuck] = record_alerts(eval_call("real-bank-wrong-zip-twice"), config, 0.0)
    assert stuck.kind == "repeated_failures"
    assert stuck.message == "Handed off after repeated failures"
    # A call still going: its alerts come as its turns are written.
    ignored = eval_call("syn-bank-ignored-agent-request")

    def as_of(turns: int) -> list[str]:
        return [a.kind for a in record_alerts(live(ignored, "c1", turns), config, 0.0)]

    assert as_of(4) == []
    assert as_of(5) == ["repeated_failures"]  # the bot's second fallback in a row
    assert as_of(6) == ["angry_caller", "repeated_failures"]
    [_, failing] = record_alerts(ignored, config, 0.0)
    assert failing.message == "The bot made no progress 2 times in a row"
    assert failing.detail["turns"] == [2, 4]
    assert record_alerts(eval_call("real-bank-check-balance"), config, 0.0) == []
    assert record_alerts(eval_call("real-bank-agent-request-first-turn"), config, 0.0) == []

    form = load_qa("bank").form
    leak = eval_call("syn-bank-bot-reads-card-on-file")
    alert = scorecard_alert(leak, score_call(leak, form), 5.0)
    assert alert.kind == "qa_violation"
    assert alert.detail["critical"] == ["bot:no_sensitive_readback"]
    assert "critical" in alert.message
    fine = eval_call("real-bank-check-balance")
    assert scorecard_alert(fine, score_call(fine, form), 5.0) is None

    waits = (("h1", "queued", 0.0), ("h2", "queued", 2.0), ("h3", "claimed", 0.0))
    rows = [
        {"handoff_id": h, "call_id": f"c{h}", "status": status, "created_at": at, "reason": "x"}
        for h, status, at in waits
    ]
    [wait] = queue_alerts(rows, AlertConfig(queue_wait_s=60), 61.0)
    assert (wait.alert_id, wait.detail["waited_s"]) == ("long_queue_wait:h1", 61.0)
    assert wait.message == "Caller waiting 61 s for an agent (x)"


def packet(handoff_id: str, call_id: str) -> dict:
    return {
        "handoff_id": handoff_id,
        "call_id": call_id,
        "caller_id": "+15551230001",
        "pack": "bank",
        "reason": "negative_sentiment",
        "summary": "Wants: unclear.",
        "signals": {"anger": 2.0},
        "sentiment": {"anger_total": 2.0, "cues": ["ridiculous", "sick of"]},
        "transcript": [{"role": "caller", "text": "this is ridiculous", "intent": "complaint"}],
    }


def test_two_workers_raise_each_alert_once_and_it_reaches_a_receiver_that_was_down(store):
    other = Store(store.url)  # a second worker on the same database
    with socket.socket() as probe:  # a port with nobody listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/alerts"
    angry = eval_call("real-bank-angry-fees")
    store.save_call(angry)
    store.add_handoff(packet("h1", angry["call_id"]))
    later = time.time() + 120  # two minutes on: the caller is still waiting
    workers = [
        AlertMonitor(s, (url,), AlertConfig(queue_wait_s=60), clock=lambda: later)
        for s in (store, other)
    ]
    try:
        assert sum(w.sweep() for w in workers) == 1  # every worker sweeps: one alert
        for worker in workers:
            worker.on_saved(angry)  # both saw the same angry turn
            worker.flush()
        alerts = store.list_alerts()
        assert sorted(a["kind"] for a in alerts) == ["angry_caller", "long_queue_wait"]
        assert store.list_alerts(later + 1) == []  # since: nothing newer
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(alert_outbox)).scalar() == 2

        dispatcher = WebhookDispatcher(store, SECRET, base_delay_s=0.05, outbox=alert_outbox)
        assert dispatcher.deliver_due() == 0  # the receiver is down: kept for later
        receiver = Receiver([], port=port)

        def delivered() -> bool:
            dispatcher.deliver_due()
            return len(receiver.received) >= 2

        try:
            assert wait_for(delivered)
            time.sleep(0.2)
            assert dispatcher.deliver_due() == 0 and len(receiver.received) == 2  # once each
        finally:
            receiver.close()
        bodies = {}
        for headers, body, status in receiver.received:
            assert status == 200
            assert verify(body, SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
            data = json.loads(body)
            bodies[data["alert_id"]] = data
        assert set(bodies) == {a["alert_id"] for a in alerts}
        assert all(
            b["event"] == "alert" and b["call_id"] == angry["call_id"] for b in bodies.values()
        )

        # Erasing the caller's call removes its alerts and their deliveries too.
        deleted = store.erase([angry["call_id"]])
        assert deleted["alerts"] == 2 and deleted["alert_outbox"] == 2
        assert store.list_alerts() == []
    finally:
        for worker in workers:
            worker.close()
        other.close()


# --- the live board ----------------------------------------------------------------------


def board_of(board: LiveBoard) -> dict[str, dict]:
    asyncio.run(board.refresh())
    return {row["call_id"]: row for row in board.rows()}


def test_the_board_follows_calls_and_handoffs_written_by_other_workers(store):
    worker = Store(store.url)  # the calls run on another worker; this one only reads
    board = LiveBoard(store, poll_s=0)
    try:
        assert board_of(board) == {}
        calm = eval_call("real-bank-check-balance")
        angry = eval_call("real-bank-angry-fees")
        worker.save_call(live(calm, "calm1", 2))
        worker.save_call(live(angry, "angry1", 2))
        rows = board_of(board)
        assert rows["calm1"]["state"] == "bot" and rows["calm1"]["sentiment"]["label"] == "calm"
        assert rows["calm1"]["intent"] == call_intent(calm) != "none"
        assert rows["angry1"]["intent"] == "complaint"
        assert rows["angry1"]["sentiment"] == {
            "label": "angry",
            "anger": 2.0,
            "cues": ["ridiculous", "sick of"],
        }
        assert rows["angry1"]["last_caller"].startswith("This is ridiculous")
        assert rows["angry1"]["queue_s"] is None
        version = board.version
        assert board_of(board) and board.version == version  # nothing changed

        worker.add_handoff(packet("h1", "angry1"))  # the transfer message plays
        assert board_of(board)["angry1"]["state"] == "handing_off"
        worker.save_call(angry | {"call_id": "angry1"})  # the bot's part ended
        worker.save_call(calm | {"call_id": "calm1"})
        rows = board_of(board)
        assert list(rows) == ["angry1"]
        queued = rows["angry1"]
        assert (queued["state"], queued["handoff_id"], queued["reason"]) == (
            "queued",
            "h1",
            "negative_sentiment",
        )
        assert queued["queue_s"] >= 0 and queued["agent"] is None
        worker.claim("h1", "ana")
        taken = board_of(board)["angry1"]
        assert (taken["state"], taken["agent"]) == ("with_agent", "ana")
        assert taken["queue_s"] == round(taken["claimed_at"] - taken["queued_at"], 1)
        worker.close_handoff("h1", "ana", "resolved")
        assert board_of(board) == {}
        # A board opened now starts from the database, not from what this one saw.
        worker.save_call(live(calm, "calm2", 2))
        assert list(board_of(LiveBoard(store, poll_s=0))) == ["calm2"]
    finally:
        worker.close()


# --- the page and its API on a real server --------------------------------------------------


@pytest.fixture
def empty_center(tmp_path):
    """``voicebot serve`` with a database that holds no calls yet."""
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    add_user(store, "sue", "supervisor")
    add_user(store, "ana", "agent")
    server = Server(create_app(NoCalls(), store=store, history=store))
    yield store, server.url
    server.stop()
    store.close()


def test_agents_may_not_supervise_and_an_empty_range_says_so(empty_center, browser):
    _, url = empty_center
    ana, sue = signed_in(url, "ana"), signed_in(url, "sue")
    for path in ("/supervisor", "/api/supervisor/board", "/api/kpis", "/api/qa", "/api/alerts"):
        assert ana.get(path).status_code == 403, path
    empty = sue.get("/api/kpis", params={"since": "2020-01-01", "until": "2020-01-02"})
    assert empty.status_code == 404
    assert empty.json()["detail"] == (
        "no calls between 2020-01-01T00:00:00+00:00 and 2020-01-02T00:00:00+00:00"
    )
    assert sue.get("/api/qa", params={"since": "2020-01-01", "until": "2020-01-02"}).json() == []
    bad = sue.get("/api/kpis", params={"since": "last tuesday"})
    assert bad.status_code == 422 and "not a date or time: 'last tuesday'" in bad.json()["detail"]
    backwards = sue.get("/api/qa", params={"since": "2020-01-02", "until": "2020-01-01"})
    assert backwards.status_code == 422 and "must be before" in backwards.json()["detail"]
    assert sue.get("/api/supervisor/board").json() == []
    assert sue.get("/api/qa/nope").status_code == 404
    assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
    ana.close()
    sue.close()

    page = browser.new_context().new_page()
    sign_in_page(page, url, "sue", "/supervisor")
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    assert page.inner_text("#me") == "sue (supervisor)"
    page.locator("#kpi-message").wait_for(timeout=WAIT_MS)
    assert page.inner_text("#kpi-message").startswith("no calls between ")
    page.locator("#qa-message", has_text="No scored calls in this range.").wait_for()
    assert page.inner_text("#board") == "No calls in progress."
    assert page.inner_text("#alerts") == "No alerts in the last 24 hours."
    page.context.close()


def seed_history(service: HandoffService, days: int = 6) -> int:
    """Last week's calls: the labelled QA calls, re-dated over the days before today,
    stored and scored the way finished calls are."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    files = sorted(CALLS.glob("*.json"))
    for i, path in enumerate(files):
        record = json.loads(path.read_text())
        # 08:00-16:59 on each of the days before today: inside a week back from any hour
        start = today - timedelta(days=1 + i % days) + timedelta(hours=8 + i % 9, minutes=i % 60)
        record["started_at"] = start.isoformat()
        service.store.save_call(record)
        service.qa.score(record)
    service.alerts.flush()
    return len(files)


@pytest.fixture
def center(tmp_path):
    """A real ``voicebot serve`` (its own process, models and all) on a database holding last
    week's calls, posting alerts to a real receiver; a caller waits in the queue 2 s before
    it is an alert. (In a process of its own, the server's calls keep real time on a busy
    machine: the test's browser driver and caller do not share its interpreter.)"""
    receiver = Receiver([])
    url = f"sqlite:///{tmp_path}/calls.db"
    config = HandoffConfig.resolve(url, webhook_secret=SECRET, alert_webhooks=(receiver.url,))
    service = HandoffService(replace(config, spool_dir=str(tmp_path / "spool")))
    add_user(service.store, "sue", "supervisor")
    seeded = seed_history(service)
    service.close()
    store = Store(url)
    # With a transfer target the stream ends into Twilio's <Dial> at the handoff, and the
    # handoff waits in the queue for the desks (holding on the desk: tests/test_bridge.py).
    options = ("--db", url, "--alert-webhook", receiver.url, "--alert-queue-wait-s", "2")
    options += ("--transfer-to", "sip:agents@127.0.0.1")
    env = {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "VOICEBOT_WEBHOOK_SECRET": SECRET}
    server = Worker(tmp_path / "serve", *options, env=env)
    try:
        server.wait_ready()
        yield store, server, receiver, seeded
    finally:
        server.stop()
        store.close()
        receiver.close()


@pytest.mark.e2e
def test_a_phone_call_on_the_board_its_alerts_and_its_scorecard(
    center, browser, caller_audio, tmp_path
):
    store, server, receiver, seeded = center
    week = kpi_report(store, datetime.now(UTC) - timedelta(days=7), datetime.now(UTC))
    assert week.total.calls == seeded
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    sign_in_page(page, server.url, "sue", "/supervisor")
    page.wait_for_selector("#conn.live", timeout=WAIT_MS)
    page.locator(".tile[data-kpi=calls] .v").wait_for(timeout=WAIT_MS)
    assert page.inner_text(".tile[data-kpi=calls] .v") == str(week.total.calls)
    assert (
        page.inner_text(".tile[data-kpi=containment] .v")
        == f"{round(week.total.containment * 100)}%"
    )
    bars = page.locator("figure", has_text="Calls per day").locator("rect")
    assert bars.count() == 2 * len(week.days)  # contained and handed off, per day
    assert page.locator("#qa tbody tr").count() == seeded
    assert page.inner_text("#board") == "No calls in progress."

    call = PhoneCall(
        f"{server.ws_url}/twilio/media",
        caller_audio("I was charged twice at a restaurant"),
        caller_audio("this is useless, get me a real person"),
        auth_token=TWILIO_TOKEN,
    )
    try:
        assert call.heard_first.wait(180)
        row = page.locator("#board tr[data-state=bot]")
        row.wait_for(timeout=WAIT_MS)
        call_id = row.get_attribute("data-call")
        record = store.get_call(call_id)
        assert record["ended_by"] is None and record["caller_id"] == "+15551230001"
        page.locator(f"#board tr[data-call='{call_id}'] td.intent").filter(
            has_text=call_intent(record).replace("_", " ")
        ).wait_for(timeout=WAIT_MS)
        assert page.inner_text(f"#board tr[data-call='{call_id}'] td.mood") == "calm"
        sue = signed_in(server.url, "sue")  # the API shows it live too
        [listed] = [c for c in sue.get("/api/calls").json() if c["call_id"] == call_id]
        sue.close()
        assert listed["active"] is True
    finally:
        call.go_on()
    angry = page.locator("#alerts li[data-kind=angry_caller]", has_text=f"call {call_id}")
    angry.wait_for(timeout=WAIT_MS)
    assert "“useless”" in angry.inner_text()
    queued = page.locator(f"#board tr[data-call='{call_id}'][data-state=queued]")
    queued.wait_for(timeout=WAIT_MS)
    assert call.join() == ["call ended by handoff"]
    assert "in queue" in queued.inner_text() and "“useless”" in queued.inner_text()
    waiting = page.locator("#alerts li[data-kind=long_queue_wait]", has_text=f"call {call_id}")
    waiting.wait_for(timeout=WAIT_MS)
    assert "waiting" in waiting.inner_text()
    [handoff] = store.list_handoffs("queued")
    assert handoff["call_id"] == call_id
    assert page.inner_text(f"#board tr[data-call='{call_id}'] td.wait") != ""
    screenshot(page, "supervisor.png", tmp_path)

    # The alerts went out as signed webhooks too (the outbox, delivered in the background).
    def posted() -> set[tuple[str, str]]:
        return {(json.loads(b)["kind"], json.loads(b)["call_id"]) for _, b, _ in receiver.received}

    assert wait_for(lambda: {("angry_caller", call_id), ("long_queue_wait", call_id)} <= posted())
    for headers, body, _ in receiver.received:
        assert verify(body, SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])

    # Once scored, the call is in the QA results; its drill-down cites the turns.
    assert wait_for(lambda: store.get_scorecard(call_id) is not None)
    page.click(".ranges button[data-since=today]")
    result = page.locator(f"#qa tr[data-call='{call_id}']")
    result.wait_for(timeout=WAIT_MS)
    result.click()
    page.locator("#drill-card tr[data-criterion=greeting]").wait_for(timeout=WAIT_MS)
    card = store.get_scorecard(call_id)
    shown = page.locator("#drill-card tr[data-criterion]")
    assert shown.count() == sum(len(p["results"]) for p in card["parts"])
    assert page.locator("#drill-transcript li").count() == len(store.get_call(call_id)["turns"])
    page.locator("#drill-card tr[data-criterion=greeting] .evidence a").first.click()
    assert page.get_attribute("#drill-transcript li.cited", "data-turn") == "0"
    screenshot(page.locator("#drill"), "supervisor-drill-down.png", tmp_path)
    opened = [(e["actor"], e["action"]) for e in store.list_audit(call_id=call_id)]
    assert opened.count(("sue", "viewed")) == 2  # the transcript and the scorecard
    page.context.close()
