"""Erasure and retention on a real SQLite file and a real PostgreSQL server: afterwards no
table and no file under the data folder holds the caller's number or a phrase of the call."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from voicebot.audio.recorder import StereoRecorder
from voicebot.cli import main
from voicebot.events import Decision, Reply
from voicebot.handoff.packet import build_packet
from voicebot.pipeline.record import CallRecord, Turn
from voicebot.privacy.lockout import VerificationLockout
from voicebot.server.calls import TranscriptDir
from voicebot.store import Store, StoreWriter
from voicebot.store.schema import metadata
from voicebot.store.spool import Spool

CALLER, OTHER = "+15550001234", "+15550009876"
PHRASE = "the purple elephant on maple street"
STATE = {"slots": {}, "verified": False, "customer_id": None, "done": [], "pending": []}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/var/voicebot.db"
    url = request.getfixturevalue("pg_url")
    store = Store(url)
    metadata.drop_all(store.engine)
    metadata.create_all(store.engine)
    store.close()
    return url


def seed(url: str, data: Path, caller: str, phrase: str, *, days_ago: float = 0.0) -> str:
    """One call with every trace a call leaves: rows, packet, outbox body, lockout counts,
    a JSON transcript, a spooled copy and a recording."""
    store = Store(url)
    writer = StoreWriter(store, spool_dir=data / "spool", webhooks=("http://127.0.0.1:9/h",))
    started = datetime.now(UTC) - timedelta(days=days_ago)
    record = CallRecord(pack="bank", asr_model="tiny.en", tts_voice="joe", caller_id=caller)
    record.started_at = started.isoformat()
    record.recording = str(data / "recordings" / f"{record.call_id}.wav")
    record.turns = [Turn("caller", f"hi, {phrase}", 1.0), Turn("bot", "Let me connect you.", 2.0)]
    decision = Decision("handoff", "caller_request", "the caller asked", {"text": phrase})
    reply = Reply("Let me connect you.", "handoff", decision=decision, context=STATE)
    writer.update(record)
    writer.submit(build_packet(record, reply))
    writer.close()
    VerificationLockout(store).failed(caller, None)
    store.close()
    transcripts = TranscriptDir(data / "calls")
    transcripts.update(record)
    transcripts.close()
    Spool(data / "spool").put("call", record.call_id, record.to_dict())
    recorder = StereoRecorder(Path(record.recording))
    recorder.write(np.full(320, 1000, np.int16), np.zeros(320, np.int16))
    recorder.close()
    return record.call_id


def traces(url: str, data: Path, *needles: str, calls: tuple[str, ...] = ()) -> list[str]:
    """Where any needle (a number, a phrase) or any of ``calls`` (call ids) still is: table
    rows, and the bytes of every file under ``data`` (the SQLite file and its write-ahead log
    included). Call ids are looked for outside the audit log only, which keeps the ids of
    what was erased (checked in the tests) and nothing about the caller."""
    found = []
    store = Store(url)
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            wanted = needles if table.name == "audit_log" else needles + calls
            for row in conn.execute(select(table)):
                found += [f"{table.name}: {row}" for n in wanted if n in str(tuple(row))]
    store.close()
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            database = path.name.endswith((".db", ".db-wal", ".db-journal"))
            wanted = needles if database else needles + calls
            found += [f"{path}" for n in wanted if n.encode() in content]
    return found


def test_erasing_a_caller_leaves_no_trace_and_spares_the_others(url, tmp_path, capsys):
    data = tmp_path / "var"
    seed(url, data, CALLER, PHRASE)
    seed(url, data, CALLER, "and a second call about my savings")
    kept = seed(url, data, OTHER, "someone else entirely")
    assert traces(url, data, CALLER, PHRASE)  # the test can see them before
    args = ["privacy", "erase", "--db", url, "--data-dir", str(data)]
    assert main([*args, "--caller", "(555) 000-1234"]) == 0  # however it is written
    out = capsys.readouterr().out
    assert out.startswith("erased 2 call(s)") and "turns 4" in out and "webhook_outbox 2" in out
    assert traces(url, data, CALLER, CALLER[2:], PHRASE, "second call about") == []
    assert traces(url, data, calls=(kept,)) and traces(url, data, "someone else entirely")
    assert main([*args, "--call", kept]) == 0
    assert traces(url, data, OTHER, "someone else", calls=(kept,)) == []
    # Each erasure is in the audit log, by call id and who did it, naming no caller.
    store = Store(url)
    erased = [e for e in store.list_audit(limit=10) if e["action"] == "erased"]
    store.close()
    assert len(erased) == 3 and all(e["actor"].startswith("cli:") for e in erased)
    assert kept in {e["call_id"] for e in erased}
    assert not any(n in str(e) for e in erased for n in (CALLER, CALLER[2:], PHRASE, OTHER))


def test_erasing_an_unknown_caller_says_so_and_fails(url, tmp_path, capsys):
    data = tmp_path / "var"
    seed(url, data, OTHER, "someone else entirely")
    status = main(["privacy", "erase", "--caller", CALLER, "--db", url, "--data-dir", str(data)])
    assert status != 0
    assert f"no calls from {CALLER}" in capsys.readouterr().err
    assert traces(url, data, OTHER)  # nothing else was touched


def test_purge_erases_calls_past_retention(url, tmp_path, capsys):
    data = tmp_path / "var"
    old = seed(url, data, CALLER, PHRASE, days_ago=120)
    new = seed(url, data, OTHER, "a call from this week", days_ago=2)
    args = ["privacy", "purge", "--db", url, "--data-dir", str(data)]
    assert main([*args, "--older-than", "90d"]) == 0
    assert capsys.readouterr().out.startswith("purged 1 call(s)")
    assert traces(url, data, PHRASE, calls=(old,)) == [] and traces(url, data, calls=(new,))
    assert main(args) == 0  # the bank pack keeps calls 90 days: the new one stays
    assert traces(url, data, calls=(new,))
    assert main([*args, "--older-than", "1d"]) == 0
    assert traces(url, data, calls=(new,)) == []


def test_the_server_retention_job_purges_at_start(tmp_path):
    from voicebot.privacy.retention import RetentionJob

    url, data = f"sqlite:///{tmp_path}/var/voicebot.db", tmp_path / "var"
    old = seed(url, data, CALLER, PHRASE, days_ago=400)
    store = Store(url)
    job = RetentionJob(store, [data]).start()
    deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
    while store.call_rows([old]) and time.monotonic() < deadline:
        time.sleep(0.1)
    job.stop()
    store.close()
    assert traces(url, data, PHRASE, calls=(old,)) == []
