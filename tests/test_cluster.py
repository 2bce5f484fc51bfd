"""Several servers, one center: two real ``voicebot serve`` workers (models and all) on
loopback behind Debian's HAProxy running ``deploy/haproxy.cfg``, sharing a real PostgreSQL.

A Twilio caller (the faithful peer) calls through the balancer and lands on one worker; the
supervisor page served by the other worker shows the call live, the agent desks on both get
the handoff, two agents on different workers claim it at once and the database picks one,
the other desk shows who; sign-in sessions hold on whichever worker a request lands. Last,
a worker is killed: the balancer sends everything to the other one from the next request
on."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.browsers import WAIT_MS
from tests.servers import Balancer, PhoneCall, Worker
from tests.signin import TWILIO_TOKEN, add_user, sign_in_page, signed_in
from voicebot.store import Store
from voicebot.store.schema import metadata

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def center(pg_url, tmp_path_factory):
    """Two workers on one PostgreSQL (fresh tables) behind HAProxy; users to sign in."""
    store = Store(pg_url)
    metadata.drop_all(store.engine)
    metadata.create_all(store.engine)
    for name, role in (("sue", "supervisor"), ("ana", "agent"), ("bob", "agent")):
        add_user(store, name, role)
    folder = tmp_path_factory.mktemp("center")
    # The stream ends into Twilio's <Dial> at the handoff, which waits in the queue for the
    # desks of both workers (holding on the desk: tests/test_bridge.py).
    options = ("--db", pg_url, "--alert-queue-wait-s", "2", "--transfer-to", "sip:agents@127.0.0.1")
    env = {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "VOICEBOT_DB_URL": pg_url}
    workers = [Worker(folder / name, *options, env=env) for name in ("w1", "w2")]
    balancer = None
    try:
        for worker in workers:
            worker.wait_ready()
        balancer = Balancer(folder / "haproxy", workers)
        balancer.wait_up({"w1", "w2"})
        yield store, workers, balancer
    finally:
        for process in (balancer, *workers):
            if process is not None:
                process.stop()
        store.close()


def test_sessions_hold_on_whichever_worker_a_request_lands(center):
    _, workers, balancer = center
    sue = signed_in(balancer.url, "sue")  # the session is made by one worker...
    served = set()
    for _ in range(8):  # ...and used on both: the balancer spreads the requests
        answer = sue.get("/auth/session", headers={"Connection": "close"})
        assert answer.status_code == 200 and answer.json()["name"] == "sue"
        served.add(answer.headers["X-Voicebot-Worker"])
    assert served == {"w1", "w2"}
    cookies = dict(sue.cookies)
    for worker in workers:  # straight to each worker, too
        assert httpx.get(f"{worker.url}/api/calls", cookies=cookies).status_code == 200
    assert sue.post("/auth/logout").status_code == 200  # signed out on one: on all
    for worker in workers:
        assert httpx.get(f"{worker.url}/api/calls", cookies=cookies).status_code == 401
    sue.close()


def test_a_call_on_one_worker_is_seen_and_handed_off_on_the_other(center, browser, caller_audio):
    store, workers, balancer = center
    supervisor = browser.new_context()
    sign_in_page(supervisor.new_page(), balancer.url, "sue", "/supervisor")
    boards = [supervisor.new_page() for _ in workers]  # one supervisor page per worker
    desks = []
    for name, worker in zip(("ana", "bob"), workers, strict=True):  # ana on w1, bob on w2
        page = browser.new_context().new_page()
        sign_in_page(page, balancer.url, name)
        page.goto(f"{worker.url}/agent")
        desks.append(page)
    for page, worker in zip(boards, workers, strict=True):
        page.goto(f"{worker.url}/supervisor")
    for page in (*boards, *desks):
        page.wait_for_selector("#conn.live", timeout=WAIT_MS)

    call = PhoneCall(  # through the balancer: a request, then (once seen) a person, please
        f"{balancer.ws_url}/twilio/media",
        caller_audio("I lost my card yesterday"),
        caller_audio("I want to talk to a real person please"),
        auth_token=TWILIO_TOKEN,
    )
    try:
        assert call.heard_first.wait(180)
        busy = [httpx.get(f"{w.url}/healthz").json()["active_calls"] for w in workers]
        assert sorted(busy) == [0, 1]  # the call is on one worker
        here, other = (0, 1) if busy[0] else (1, 0)
        row = boards[other].locator("#board tr[data-state=bot]")  # seen on the other
        row.wait_for(timeout=WAIT_MS)
        call_id = row.get_attribute("data-call")
        boards[here].locator(f"#board tr[data-call='{call_id}']").wait_for(timeout=WAIT_MS)
        # then the caller's turn, as the next poll of the database brings it
        row.filter(has_text=re.compile("lost", re.I)).wait_for(timeout=WAIT_MS)
        viewer = signed_in(workers[other].url, "sue")
        listed = {c["call_id"]: c for c in viewer.get("/api/calls").json()}
        viewer.close()
        assert listed[call_id]["active"] is True  # the other worker lists it as live
    finally:
        call.go_on()
    assert call.join() == ["call ended by handoff"]

    # Every desk gets the handoff, whichever worker serves it.
    for page in desks:
        page.locator("article[data-status=queued]", has_text="+15551230001").wait_for(
            timeout=WAIT_MS
        )
    [handoff] = store.list_handoffs("queued")
    assert handoff["call_id"] == call_id
    # Both workers sweep the queue: the long wait is one alert, shown by both boards.
    for page in boards:
        page.locator("#alerts li[data-kind=long_queue_wait]", has_text=call_id).wait_for(
            timeout=WAIT_MS
        )
    waits = [a for a in store.list_alerts() if a["kind"] == "long_queue_wait"]
    assert [a["call_id"] for a in waits] == [call_id]

    # ana (on w1) and bob (on w2) claim at the same moment: the database picks one.
    agents = [signed_in(w.url, name) for name, w in zip(("ana", "bob"), workers, strict=True)]
    start = threading.Barrier(2)

    def claim(client):
        start.wait()
        return client.post(f"/api/handoffs/{handoff['handoff_id']}/claim")

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(claim, agents))
    for client in agents:
        client.close()
    assert sorted(a.status_code for a in answers) == [200, 409]
    winner = next(a.json()["agent"] for a in answers if a.status_code == 200)
    [refusal] = [a.json()["detail"] for a in answers if a.status_code == 409]
    assert refusal.endswith(f"already claimed by {winner}")
    loser = desks[1] if winner == "ana" else desks[0]
    taken = loser.locator("article[data-status=claimed]", has_text=f"claimed by {winner}")
    taken.wait_for(timeout=WAIT_MS)
    assert taken.locator("button.claim").count() == 0
    for page in boards:
        page.locator(
            f"#board tr[data-call='{call_id}'][data-state=with_agent]", has_text=winner
        ).wait_for(timeout=WAIT_MS)
    for context in {p.context for p in (*boards, *desks)}:
        context.close()


def test_a_worker_that_dies_is_out_of_the_balancer_at_once(center):
    """Runs last: it kills a worker. (A call it had ends with it; ending that call's record
    from another worker is the worker leases' job, issue 19.)"""
    _, workers, balancer = center
    sue = signed_in(balancer.url, "sue")
    workers[0].kill()  # no goodbye: the health checks have not noticed yet
    # From the next request on, w2 answers: the balancer retries a refused connection on
    # the other worker.
    for _ in range(4):
        answer = httpx.get(f"{balancer.url}/readyz", headers={"Connection": "close"})
        assert (answer.status_code, answer.headers["X-Voicebot-Worker"]) == (200, "w2")
    answer = sue.get("/api/calls", headers={"Connection": "close"})  # the session holds
    assert answer.status_code == 200 and answer.headers["X-Voicebot-Worker"] == "w2"
    sue.close()
    ana = signed_in(balancer.url, "ana")  # and signing in
    assert ana.get("/auth/session").json()["name"] == "ana"
    ana.close()
