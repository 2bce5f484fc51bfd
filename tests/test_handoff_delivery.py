"""Handoffs reach people even when things break: the spool and the webhook outbox.

Real SQLite databases locked by a real second connection, and a real HTTP receiver on
127.0.0.1 that answers 500, stalls, or is not there at all.
"""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.servers import Receiver, wait_for
from voicebot.handoff.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDispatcher, verify
from voicebot.pipeline.record import CallRecord, Turn
from voicebot.store import Store, StoreWriter

SECRET = "s3cret"


def packet(handoff_id="h1"):
    return {
        "handoff_id": handoff_id,
        "call_id": "c1",
        "caller_id": "+15551230001",
        "reason": "negative_sentiment",
        "summary": "Wants: dispute a wrong charge.",
        "transcript": [{"role": "caller", "text": "this is ridiculous", "start": 1.0}],
    }


# --- the writer: transcripts as they happen, the spool when the database fails -----------


def test_turns_are_written_as_the_call_goes(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/db.sqlite")
    writer = StoreWriter(store, spool_dir=tmp_path / "spool")
    rec = CallRecord(pack="bank", asr_model="tiny.en", tts_voice="joe")
    for i in range(20):  # a burst: coalesced, nothing lost
        rec.turns.append(Turn(role="caller", text=f"turn {i} ✓", start=float(i)))
        writer.update(rec)
    assert writer.flush()
    assert store.turn_count(rec.call_id) == 20
    rec.turns[3].intent = "check_balance"  # a turn changed after it was written
    writer.update(rec)
    assert writer.flush()
    assert store.get_call(rec.call_id)["turns"][3]["intent"] == "check_balance"
    writer.close()


def test_database_locked_mid_call_spools_and_flushes_later(tmp_path):
    path = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{path}", lock_timeout_s=0.2)
    writer = StoreWriter(store, spool_dir=tmp_path / "spool", retry_s=0.1)
    rec = CallRecord(pack="bank", asr_model="tiny.en", tts_voice="joe")
    rec.turns.append(Turn(role="caller", text="first", start=0.0))
    writer.update(rec)
    assert writer.flush()

    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another process hogs the database
    rec.turns.append(Turn(role="caller", text="said while the database was locked", start=1.0))
    writer.update(rec)
    writer.submit(packet())  # must return (spooled), not hang or raise
    assert writer.flush()
    spooled = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert spooled == [f"call-{rec.call_id}.json", "handoff-h1.json"]

    holder.rollback()
    holder.close()
    assert wait_for(lambda: not list((tmp_path / "spool").glob("*.json")))
    assert store.get_handoff("h1")["reason"] == "negative_sentiment"
    assert store.turn_count(rec.call_id) == 2
    writer.close()


def test_llm_summary_replaces_the_structured_one_when_ready(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/db.sqlite")
    seen = []

    def summarize(lines):
        seen.append(lines)
        return "Caller is upset about a charge.\nNothing done yet."

    writer = StoreWriter(store, spool_dir=tmp_path / "spool", summarizer=summarize)
    writer.submit(packet())
    assert store.get_handoff("h1")["reason"] == "negative_sentiment"  # committed at once
    assert writer.flush()
    row = store.get_handoff("h1")
    assert row["summary_source"] == "llm" and row["summary"].startswith("Caller is upset")
    assert seen == [["caller: this is ridiculous"]]
    writer.close()


# --- webhooks ----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    instance = Store(f"sqlite:///{tmp_path}/db.sqlite")
    yield instance
    instance.close()


def deliver_until(dispatcher, store, handoff_id, timeout=60.0):
    def done():
        dispatcher.deliver_due()
        return all(d["delivered_at"] or d["dead"] for d in store.deliveries(handoff_id))

    return wait_for(done, timeout)


def test_signed_delivery_survives_errors_and_a_slow_receiver(store):
    receiver = Receiver([500, "slow", 200])
    try:
        store.add_handoff(packet(), webhooks=(receiver.url,))
        dispatcher = WebhookDispatcher(store, SECRET, timeout_s=0.5, base_delay_s=0.05)
        assert deliver_until(dispatcher, store, "h1")
    finally:
        receiver.close()
    [delivery] = store.deliveries("h1")
    assert delivery["delivered_at"] and delivery["attempts"] == 3
    statuses = [status for _, _, status in receiver.received]
    assert statuses[0] == 500 and statuses[-1] == 200
    headers, body, _ = receiver.received[-1]
    assert json.loads(body)["handoff_id"] == "h1"
    assert verify(body, SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify(body + b" ", SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify(body, "wrong", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify(body, SECRET, str(int(time.time()) - 3600), headers[SIGNATURE_HEADER])


def test_receiver_down_keeps_the_packet_until_it_is_back(store):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    store.add_handoff(packet(), webhooks=(url,))
    dispatcher = WebhookDispatcher(store, SECRET, timeout_s=0.5, base_delay_s=0.05)
    assert dispatcher.deliver_due() == 0
    [delivery] = store.deliveries("h1")
    assert delivery["attempts"] == 1 and "ConnectError" in delivery["last_error"]
    assert not delivery["dead"] and not delivery["delivered_at"]
    receiver = Receiver([], port=port)
    try:
        assert deliver_until(dispatcher, store, "h1")
        assert len(receiver.received) == 1
    finally:
        receiver.close()


def test_gives_up_after_max_attempts_but_keeps_the_record(store):
    receiver = Receiver([500] * 10)
    try:
        store.add_handoff(packet(), webhooks=(receiver.url,))
        dispatcher = WebhookDispatcher(
            store, SECRET, timeout_s=0.5, base_delay_s=0.01, max_attempts=3
        )
        assert deliver_until(dispatcher, store, "h1")
    finally:
        receiver.close()
    [delivery] = store.deliveries("h1")
    assert delivery["dead"] and delivery["attempts"] == 3 and delivery["last_error"] == "HTTP 500"


def test_an_operator_retries_deliveries_that_gave_up(store, tmp_path):
    receiver = Receiver([500] * 2)
    try:
        store.add_handoff(packet(), webhooks=(receiver.url,))
        dispatcher = WebhookDispatcher(store, SECRET, base_delay_s=0.01, max_attempts=2)
        assert deliver_until(dispatcher, store, "h1")
        assert store.deliveries("h1")[0]["dead"]
        assert not receiver.script  # the receiver is fixed: it answers 200 from now on
        command = [sys.executable, "-m", "voicebot", "handoffs", "deliver", "--retry-dead"]
        url = f"sqlite:///{tmp_path}/db.sqlite"
        env = {**os.environ, "VOICEBOT_WEBHOOK_SECRET": SECRET}
        result = subprocess.run(
            [*command, "--db", url], capture_output=True, text=True, env=env, timeout=120
        )
    finally:
        receiver.close()
    assert result.returncode == 0, result.stderr
    assert "retrying 1 delivery(ies)" in result.stderr and "delivered 1 webhook(s)" in result.stderr
    [delivery] = store.deliveries("h1")
    assert delivery["delivered_at"] and not delivery["dead"] and delivery["attempts"] == 3
