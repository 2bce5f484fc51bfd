"""Several servers, one center: two real ``voicebot serve`` workers (models and all) on
loopback behind Debian's HAProxy running ``deploy/haproxy.cfg``, sharing a real PostgreSQL.

A Twilio caller (the faithful peer) calls through the balancer and lands on one worker; the
supervisor page served by the other worker shows the call live, the agent desks on both get
the handoff, two agents on different workers claim it at once and the database picks one,
the other desk shows who; sign-in sessions hold on whichever worker a request lands. Last,
a worker is killed: the balancer sends everything to the other one from the next request
on."""

import asyncio
import contextlib
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import websockets

from tests.browsers import WAIT_MS
from tests.servers import Balancer, PhoneCall, Worker
from tests.signin import TWILIO_TOKEN, add_user, sign_in_page, signed_in
from tests.softphone import Softphone
from voicebot.server.access import COOKIE
from voicebot.store import Store
from voicebot.store.schema import metadata

pytestmark = pytest.mark.e2e

AGENT_SAYS = "Hello, this is Anna from the bank. How can I help you today?"


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
    workers = [
        Worker(folder / name, *options, "--worker-name", name, env=env) for name in ("w1", "w2")
    ]
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


class BrowserCaller:
    """A signed-in browser caller on ``/ws/call`` (the page's protocol from Python): 20 ms
    PCM16 frames at 16 kHz in real time, what it says queued with ``say``. The server sends
    only the bot's voiced audio: the caller notes on its own 20 ms clock (``tick``) when it
    heard the bot, and keeps what it heard from tick ``listen_from`` on."""

    def __init__(self, url: str, cookie: str) -> None:
        self.url, self.cookie = f"{url}/ws/call", cookie
        self.tick = 0
        self.voiced: list[int] = []  # ticks at which voiced bot audio arrived
        self.heard: list[np.ndarray] = []
        self.listen_from: int | None = None
        self.closed: tuple[int, str] | None = None
        self._say: list[np.ndarray] = []

    def say(self, audio: np.ndarray) -> None:
        pcm = (audio * 32767).astype(np.int16)
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % 320, np.int16)])
        self._say.extend(pcm.reshape(-1, 320))

    async def quiet_for(self, frames: int, after: int = 0) -> None:
        """Until it has heard voice (past frame ``after``), then ``frames`` of quiet."""
        while not self.voiced or self.voiced[-1] < after or self.tick - self.voiced[-1] < frames:
            await asyncio.sleep(0.02)

    async def run(self) -> None:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        async with websockets.connect(self.url, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "start", "sampleRate": 16000}))
            reader = asyncio.create_task(self._read(ws))
            t0 = time.monotonic()
            try:
                while not reader.done():
                    await asyncio.sleep(max(0.0, t0 + self.tick * 0.02 - time.monotonic()))
                    frame = self._say.pop(0) if self._say else np.zeros(320, np.int16)
                    await ws.send(frame.astype("<i2").tobytes())
                    self.tick += 1
            except websockets.ConnectionClosed:
                pass
            await reader
            self.closed = (ws.close_code, ws.close_reason)

    async def _read(self, ws) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in ws:
                if not isinstance(message, bytes):
                    continue
                pcm = np.frombuffer(message, "<i2")
                if np.sqrt(np.mean(pcm.astype(np.float32) ** 2)) > 300:
                    self.voiced.append(self.tick)
                if self.listen_from is not None and self.tick >= self.listen_from:
                    self.heard.append(pcm)


def held_handoff(store, timeout: float = 300.0) -> dict:
    """The handoff whose caller holds for the desk (hang guard: timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in store.list_handoffs("queued"):
            if (row["packet"].get("queue") or {}).get("state") == "holding":
                return row
        time.sleep(0.1)
    raise TimeoutError("no caller held for the desk")


def test_the_agents_softphone_reaches_the_worker_holding_the_caller(center, bot, caller_audio):
    """A browser caller lands on one worker and holds for the desk; bob claims through the
    balancer, and his softphone, asking for ``?worker=NAME`` as the page does, is routed to
    the worker holding the caller, whichever one took the request: the caller hears him.
    The other worker, asked directly, names the holder instead of bridging."""
    store, workers, balancer = center
    add_user(store, "carl", "agent")  # who calls from the browser
    carl, bob = signed_in(balancer.url, "carl"), signed_in(balancer.url, "bob")
    caller = BrowserCaller(balancer.ws_url, carl.cookies[COOKIE])
    agent_voice = caller_audio(AGENT_SAYS, line="linear")
    result: dict = {}

    async def scenario():
        calling = asyncio.create_task(caller.run())
        await caller.quiet_for(50)  # the greeting, then a second of quiet
        caller.say(caller_audio("I want to talk to a real person please"))
        row = await asyncio.to_thread(held_handoff, store)
        holder = row["packet"]["queue"]["worker"]
        other = next(w for w in workers if w.name != holder)
        assert bob.post(f"/api/handoffs/{row['handoff_id']}/claim").status_code == 200
        # The other worker does not hold the caller, and says who does.
        url = f"{other.ws_url}/desk/bridge/{row['handoff_id']}"
        headers = {"Cookie": f"{COOKIE}={bob.cookies[COOKIE]}"}
        async with websockets.connect(url, additional_headers=headers) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            result["other"] = (ws.close_code, ws.close_reason)
        # Through the balancer, as the page asks: routed to the holder.
        phone = Softphone(balancer.url, bob.cookies[COOKIE], row["handoff_id"], worker=holder)
        hang_up = asyncio.Event()
        talking = asyncio.create_task(phone.run(hang_up, hang_up=True))
        while phone.frames_heard < 10:  # bridged: the caller's audio reaches the agent
            await asyncio.sleep(0.02)
        caller.listen_from = caller.tick
        phone.say((agent_voice * 32767).astype(np.int16))
        await caller.quiet_for(75, after=caller.listen_from)  # the agent's line, 1.5 s quiet
        hang_up.set()
        await talking
        await calling
        result.update(holder=holder, served_by=phone.served_by, row=row)

    try:
        # In a thread of its own: the module's Chromium (sync Playwright) holds this one's loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, asyncio.wait_for(scenario(), 600)).result()  # hang guard
    finally:
        carl.close()
        bob.close()
    holder = result["holder"]
    assert holder in {w.name for w in workers}
    assert result["other"] == (
        1008,
        f"the caller is on worker {holder}: connect with ?worker={holder}",
    )
    assert result["served_by"] == holder  # the balancer followed ?worker=
    heard = np.concatenate(caller.heard).astype(np.float32) / 32768
    words = bot.asr.transcribe(heard).text.lower()
    assert "anna" in words or "help" in words, words
    assert caller.closed is not None and caller.closed[0] == 1000
    record = store.get_call(result["row"]["call_id"])
    assert record["handoff"]["queue"]["state"] == "answered"
    assert record["handoff"]["queue"]["agent"] == "bob"


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
