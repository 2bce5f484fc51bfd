"""Reliability through real parts (issue 19): floods and junk beside a real call on a real
server (real sockets, the real models, the project's Twilio peer as the legitimate caller),
worker leases and delivery claims on real SQLite and PostgreSQL, and a real ``voicebot serve``
killed with SIGKILL mid-sentence, then started again."""

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import select

from tests.servers import Server
from tests.signin import TWILIO_TOKEN
from tests.test_handoff_delivery import Receiver, packet, wait_for
from tests.test_store import record
from voicebot.handoff.webhooks import WebhookDispatcher
from voicebot.server import ServerConfig, create_app, junk_peers
from voicebot.server.twilio import signature
from voicebot.server.twilio_peer import TwilioPeer
from voicebot.store import Store
from voicebot.store.schema import calls

SECRET = "s3cret"


# --- floods and junk beside a real call ----------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, entry: logging.LogRecord) -> None:
        self.lines.append(entry.getMessage())


@pytest.fixture(scope="module")
def server(bot):
    config = ServerConfig(
        max_calls=3, twilio_auth_token=TWILIO_TOKEN, public_call=True, start_timeout_s=4.0
    )
    instance = Server(create_app(bot, config=config), ws_max_size=65536)
    yield instance
    instance.stop()


def active_calls(server) -> int:
    return httpx.get(f"{server.url}/healthz", timeout=10).json()["active_calls"]


# The flooders run in a process of their own at the lowest CPU priority, as an attacker's
# would: they compete with the server for the CPU, not for this process's interpreter.
FLOOD = """
import asyncio, json, os, sys
from voicebot.server import junk_peers
os.nice(19)
url, headers, count = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
async def main():
    jobs = [junk_peers.flood(url, audio=True, headers=headers) for _ in range(count)]
    return await asyncio.gather(*jobs)
print(json.dumps([closed.__dict__ for closed in asyncio.run(main())]))
"""


def test_a_flood_on_signed_lines_never_costs_the_real_call_its_answers(server, caller_audio):
    """Two signed streams stream audio in real time and flood 10,000 small messages each;
    the real caller beside them is answered, each flooder is closed (1008) with a reason,
    and the unknown events they sent cost a few log lines, not one each."""
    hours = caller_audio("what are your branch opening hours")
    url = f"{server.ws_url}/twilio/media"
    headers = {"X-Twilio-Signature": signature(TWILIO_TOKEN, url, [])}
    peers = Captured()
    logging.getLogger("voicebot.peers").addHandler(peers)

    async def caller():
        async with TwilioPeer(url, caller_id="+15551230001", auth_token=TWILIO_TOKEN) as peer:
            await peer.wait_bot_done(quiet_s=0.5, timeout=90)
            said = peer.say(hours)
            first = await peer.wait_bot_speaking(after=said.last_voiced + 1, timeout=90)
            await peer.wait_bot_done(after=first, quiet_s=0.5, timeout=90)
            await peer.stop()
            await peer.wait_closed()
            return peer

    async def scenario():
        flooders = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, url, json.dumps(headers), "2",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        peer = await caller()
        out, _ = await asyncio.wait_for(flooders.communicate(), 120)
        return peer, *(junk_peers.Closed(**c) for c in json.loads(out))

    try:
        peer, *flooders = asyncio.run(scenario())
    finally:
        logging.getLogger("voicebot.peers").removeHandler(peers)
    assert peer.close_code == 1000
    for closed in flooders:
        assert closed.code == 1008 and "messages a second: not a live stream" in closed.reason
        # (How many it sent says nothing of the server: a flooder's 10,000 small messages fit
        # in the socket buffers before the server has read its first few hundred.)
    unknown = [line for line in peers.lines if "unknown Twilio event" in line]
    assert 1 <= len(unknown) <= 2  # one per 10 s; the second names how many were left out
    assert len([line for line in peers.lines if "closed" in line]) <= 2
    assert active_calls(server) == 0


def test_junk_that_says_start_never_holds_a_call_slot(server):
    """Unsigned browser connections that say ``start`` and then nothing, or stream audio
    ten times faster than real time, are closed with a reason and hold no call slot."""
    url = f"{server.ws_url}/ws/call"
    slots: list[int] = []

    async def watch(done: asyncio.Event):
        while not done.is_set():
            slots.append(await asyncio.to_thread(active_calls, server))
            await asyncio.sleep(0.1)

    async def scenario():
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        results = await asyncio.gather(
            junk_peers.junk_start(url), junk_peers.junk_start(url, fast_audio=True)
        )
        done.set()
        await watcher
        return results

    silent, fast = asyncio.run(scenario())
    assert silent.code == 1008 and "no caller audio within 4 s" in silent.reason
    assert fast.code == 1008 and "caller audio faster than real time" in fast.reason
    assert slots and max(slots) == 0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ('["start"]', 'each message must be a JSON object with a "type"'),
        ('{"type": 7}', 'each message must be a JSON object with a "type"'),
        ('{"type": "dtmf"}', "'dtmf' before \"start\""),
    ],
)
def test_browser_line_names_what_is_wrong_with_a_message(server, message, reason):
    async def close_of():
        async with websockets.connect(f"{server.ws_url}/ws/call") as ws:
            await ws.send(message)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            return ws.close_code, ws.close_reason

    code, got = asyncio.run(close_of())
    assert code in (1007, 1008) and got == reason


# --- worker leases: a dead worker's calls are interrupted, a live one's never ---------------


def test_a_dead_workers_live_calls_are_interrupted_and_a_live_workers_never(store):
    t0 = time.time()
    store.renew_lease("worker-a", 30.0, now=t0)
    store.renew_lease("worker-b", 30.0, now=t0)
    mine, theirs, ended = record(turns=2), record(turns=2), record(turns=2)
    heard = {"role": "bot", "text": "Welcome to", "start": 3.0, "planned_text": "Welcome to X."}
    mine["speaking"] = heard
    ended["ended_by"] = "bot"
    store.save_call(mine, worker_id="worker-a")
    store.save_call(theirs, worker_id="worker-b")
    store.save_call(ended, worker_id="worker-a")
    with store.engine.connect() as conn:
        query = select(calls.c.updated_at).where(calls.c.call_id == mine["call_id"])
        written = conn.execute(query).scalar_one()

    assert store.mark_interrupted(ownerless=True, now=t0 + 1) == []  # both leases hold
    store.renew_lease("worker-b", 30.0, now=t0 + 20)  # b renews; a died at t0
    assert store.mark_interrupted(now=t0 + 31) == [mine["call_id"]]
    assert store.mark_interrupted(now=t0 + 32) == []  # marked once
    assert [w["worker_id"] for w in store.live_workers(now=t0 + 31)] == ["worker-b"]

    got = store.get_call(mine["call_id"])
    assert got["ended_by"] == "interrupted"
    assert got["interrupted_at"] == datetime.fromtimestamp(written, UTC).isoformat()
    assert got["turns"][-1] == heard | {"interrupted": True}
    assert store.turn_count(mine["call_id"]) == 3
    assert store.get_call(theirs["call_id"])["ended_by"] is None
    assert store.get_call(ended["call_id"])["ended_by"] == "bot"


def test_live_calls_nobody_owns_are_interrupted_only_when_asked(store):
    orphan = record(turns=1)
    store.save_call(orphan)  # written without a worker (an older version)
    assert store.mark_interrupted(now=time.time() + 60) == []
    assert store.mark_interrupted(ownerless=True) == [orphan["call_id"]]
    assert store.get_call(orphan["call_id"])["ended_by"] == "interrupted"


# --- webhook deliveries: claimed in the database, posted once -------------------------------


def test_deliver_now_beside_a_retry_loop_posts_each_packet_once(store):
    """A delivery waiting for its next retry: ``handoffs deliver --now`` (a real
    subprocess) posts it at once, while a server's retry loop runs on the same database;
    the slow receiver gets it exactly once. A second ``--now`` finds nothing to do."""
    receiver = Receiver(["slow"])
    url = str(store.engine.url.render_as_string(hide_password=False))
    loop = WebhookDispatcher(Store(url), SECRET, timeout_s=5.0)
    try:
        store.add_handoff(packet("h-now"), webhooks=(receiver.url,))
        [delivery] = store.deliveries("h-now")
        store.delivery_failed(delivery["id"], 1, "HTTP 500", time.time() + 3600)  # due later
        thread = threading.Thread(target=loop.run, kwargs={"poll_s": 0.05})
        thread.start()
        command = [sys.executable, "-m", "voicebot", "handoffs", "deliver", "--now", "--db", url]
        env = {**os.environ, "VOICEBOT_WEBHOOK_SECRET": SECRET}
        results = [subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)]
        results.append(
            subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        )
        loop.stop()
        thread.join(timeout=30)
    finally:
        loop.store.close()
        receiver.close()
    assert [r.returncode for r in results] == [0, 0], results[0].stderr
    assert "delivered 1 webhook(s)" in results[0].stderr
    assert "delivered 0 webhook(s)" in results[1].stderr
    assert len(receiver.received) == 1
    [delivery] = store.deliveries("h-now")
    assert delivery["delivered_at"] and delivery["attempts"] == 2


def test_of_two_deliverers_at_once_exactly_one_posts(store):
    receiver = Receiver(["slow", "slow"])
    url = str(store.engine.url.render_as_string(hide_password=False))
    other = Store(url)
    try:
        store.add_handoff(packet("h-two"), webhooks=(receiver.url,))
        dispatchers = [WebhookDispatcher(s, SECRET, timeout_s=5.0) for s in (store, other)]
        counts: list[int] = []
        threads = [
            threading.Thread(target=lambda d=d: counts.append(d.deliver_due(due_or_not=True)))
            for d in dispatchers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        other.close()
        receiver.close()
    assert sorted(counts) == [0, 1] and len(receiver.received) == 1


# --- kill -9 mid-sentence, then a restart -------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Serve:
    """A real ``voicebot serve`` subprocess on 127.0.0.1, in ``folder`` (its spool, log)."""

    def __init__(self, folder: Path, db: str) -> None:
        self.port = free_port()
        command = [
            sys.executable, "-m", "voicebot", "serve", "--port", str(self.port),
            "--asr", "tiny.en", "--db", db,
        ]  # fmt: skip
        env = {**os.environ, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
        self.log = (folder / f"serve-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=folder, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        self.url = f"ws://127.0.0.1:{self.port}/twilio/media"
        assert wait_for(self._up, timeout=300), "voicebot serve did not come up"

    def _up(self) -> bool:
        assert self.process.poll() is None, "voicebot serve exited"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).is_success
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def newest_call(db: str) -> dict:
    store = Store(db)
    try:
        rows = store.list_calls(1)
        return (store.get_call(rows[0]["call_id"]) or {}) if rows else {}
    finally:
        store.close()


def test_a_server_killed_mid_sentence_leaves_its_call_interrupted_and_shutdown_says_so(
    tmp_path,
):
    """SIGKILL while the bot greets: the record stays live (nobody could end it) with the
    words heard so far; the restarted server marks it ``interrupted`` at its last write,
    that utterance its last turn. The restarted server then stops (SIGTERM) mid-call: the
    caller is told why (1012) and the record says ``shutdown``, not ``caller``."""
    db = f"sqlite:///{tmp_path}/calls.db"
    first = Serve(tmp_path, db)

    async def greeted_then(action):
        async with TwilioPeer(serve.url, caller_id="+15551230001", auth_token=TWILIO_TOKEN) as peer:
            await peer.wait_bot_speaking(timeout=90)
            # Until the record holds words of the greeting, as the caller heard them.
            assert await asyncio.to_thread(
                wait_for, lambda: (newest_call(db).get("speaking") or {}).get("text"), 90
            )
            await asyncio.to_thread(action)
            await peer.wait_closed(timeout=90)
            return peer

    try:
        serve = first
        killed = asyncio.run(greeted_then(lambda: first.stop(signal.SIGKILL)))
        left = newest_call(db)
        assert left["ended_by"] is None and left["speaking"]["text"]
        assert killed.close_code != 1000  # the socket just went away

        serve = second = Serve(tmp_path, db)  # start-up recovers what the dead one left
        got = newest_call(db)
        assert got["call_id"] == left["call_id"]
        assert got["ended_by"] == "interrupted"
        last_write = datetime.fromisoformat(got["interrupted_at"]).timestamp()
        assert last_write >= datetime.fromisoformat(left["started_at"]).timestamp()
        last = got["turns"][-1]
        assert last["role"] == "bot" and last["kind"] == "greeting" and last["interrupted"]
        assert last["text"] == left["speaking"]["text"]
        assert last["planned_text"].startswith(last["text"].rstrip(".,!?"))

        stopped = asyncio.run(greeted_then(second.stop))
    finally:
        first.stop(signal.SIGKILL)
        if "second" in locals():
            second.stop(signal.SIGKILL)
    assert stopped.close_code == 1012 and "shutting down" in stopped.close_reason
    shut = newest_call(db)
    assert shut["call_id"] != left["call_id"] and shut["ended_by"] == "shutdown"
    assert shut["speaking"] is None and shut["turns"][-1]["interrupted"]
