"""QA scorecards and KPIs through the real store (SQLite and PostgreSQL), the writer's hook,
``voicebot qa run|show`` and ``voicebot report kpis`` as an operator runs them, and /metrics."""

import json
import urllib.request
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

from tests.servers import Server
from tests.test_handoff_cli import voicebot
from voicebot.errors import NoCallsError
from voicebot.qa.kpis import kpi_report, record_kpis
from voicebot.qa.scorecard import QaScorer
from voicebot.server.metrics import metrics_router
from voicebot.store import Store, StoreWriter

GREETING = "Thank you for calling Northwind Bank. I'm the virtual assistant. How can I help?"


def turn(role, text, start, end, **extra):
    return {"role": role, "text": text, "start": start, "end": end, **extra}


def call(call_id, started_at, *, intent="check_balance", caller_id="+15551230001", **fields):
    """A finished bank call: greeting, one request, an answer that offers more help."""
    turns = [
        turn("bot", GREETING, 0.5, 4.0, kind="greeting"),
        turn("caller", "hi, how much is in my account", 5.0, 7.0, intent=intent),
        turn("bot", "Sure. Is there anything else I can help with?", 8.0, 10.0, kind="answer"),
        turn("caller", "no that's all thanks, bye", 11.0, 12.5, intent="goodbye"),
        turn("bot", "Have a great day. Goodbye.", 13.0, 15.0, kind="farewell"),
    ]
    out = {
        "call_id": call_id,
        "pack": "bank",
        "started_at": started_at,
        "caller_id": caller_id,
        "duration_s": 16.0,
        "ended_by": "bot",
        "handoff_reason": None,
        "handoff": None,
        "turns": turns,
        "survey": None,
    }
    return out | fields


def handed_off(call_id, started_at, reason="caller_request", **fields):
    turns = [
        turn("bot", GREETING, 0.5, 4.0, kind="greeting"),
        turn("caller", "let me talk to a real person", 5.0, 7.0, intent="speak_to_agent"),
        turn("bot", "Let me connect you to one of our agents.", 8.0, 10.0, kind="handoff"),
    ]
    return call(
        call_id,
        started_at,
        intent="speak_to_agent",
        turns=turns,
        ended_by="handoff",
        handoff_reason=reason,
        duration_s=11.0,
        **fields,
    )


def with_agent(call_id, started_at):
    """A live transfer: the agent joins after 30 s in the queue and talks for 20 s."""
    record = handed_off(call_id, started_at)
    record["turns"] += [
        turn("agent", "Hello, this is Sam at Northwind Bank, thanks for holding.", 40.0, 44.0),
        turn("caller", "hi, I lost my card", 45.0, 46.5),
        turn("agent", "I'm sorry to hear that. Anything else I can do for you?", 48.0, 60.0),
    ]
    record.update(ended_by="caller", duration_s=61.0)
    return record


def seed(store):
    store.save_call(call("a1", "2026-11-02T09:00:00+00:00", survey={"asked": True, "score": 4}))
    # The same caller about the same thing two days later: a1 was not resolved first time.
    store.save_call(call("a2", "2026-11-04T09:00:00+00:00", survey={"asked": True, "score": 2}))
    store.save_call(
        call("b1", "2026-11-02T10:00:00+00:00", intent="make_payment", caller_id="+15551230002")
    )
    store.save_call(handed_off("h1", "2026-11-02T11:00:00+00:00", caller_id=None))
    store.save_call(with_agent("t1", "2026-11-03T12:00:00+00:00"))
    store.save_call(call("old", "2026-10-01T09:00:00+00:00"))
    live = call("live", "2026-11-02T12:00:00+00:00", ended_by=None)
    store.save_call(live)  # still in progress: not scored, not counted
    store.add_handoff(
        {
            "handoff_id": "hh1",
            "call_id": "h1",
            "reason": "caller_request",
            "summary": "Wants: a person.",
            "transcript": [],
        }
    )
    store.claim("hh1", "sam")
    store.close_handoff("hh1", "sam", "no_answer")


def test_scorecards_and_call_ranges(store):
    seed(store)
    since, until = "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"
    found = [r["call_id"] for r in store.calls_between(since, until)]
    assert found == ["a1", "b1", "h1", "t1", "a2"]  # finished, in range, oldest first
    assert store.calls_between(since, until, "telecom") == []
    scorer = QaScorer(store)
    for record in store.calls_between(since, until):
        scorer.score(record)
    scorer.close()
    card = store.get_scorecard("t1")
    assert [p["part"] for p in card["parts"]] == ["bot", "agent"]
    assert card["form"] == "bank-standard" and card["passed"] is True
    assert len(store.list_scorecards(since, until)) == 5
    assert [c["call_id"] for c in store.list_scorecards("2026-11-03T00:00:00+00:00")] == [
        "t1",
        "a2",
    ]
    assert store.get_scorecard("live") is None
    rescored = dict(card, failed=["bot:greeting"], passed=False)
    store.save_scorecard(rescored)  # a re-run replaces the call's scorecard
    assert store.get_scorecard("t1")["failed"] == ["bot:greeting"]
    assert [h["disposition"] for h in store.handoffs_of(["h1", "a1"])] == ["no_answer"]


def test_kpis_per_day_pack_and_intent(store):
    seed(store)
    scorer = QaScorer(store)
    for record in store.calls_between():
        scorer.score(record)
    scorer.close()
    report = kpi_report(
        store, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    )
    total = report.total
    assert total.calls == 5 and total.contained == 3 and total.containment == 0.6
    assert total.handoffs == {"caller_request": 2} and total.handoff_rate == {"caller_request": 0.4}
    assert total.csat == 3.0 and total.csat_answers == 2
    # FCR: a1 has a repeat 2 days later; a2, b1, t1 do not; h1 has no caller ID.
    assert total.fcr_calls == 4 and total.fcr == 0.75
    assert total.abandoned == 1 and total.abandonment == 0.5  # h1 closed no_answer; t1 answered
    assert total.human_handle_s is not None and total.queue_wait_s is not None
    agent_row = next(r for r in report.rows if r.day == "2026-11-03")
    assert agent_row.intent == "speak_to_agent" and agent_row.human_handle_s == 20.0
    assert agent_row.queue_wait_s == 30.0
    assert [d.day for d in report.days] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    keys = [(r.day, r.pack, r.intent) for r in report.rows]
    assert ("2026-11-02", "bank", "check_balance") in keys and len(keys) == len(set(keys))
    assert ("handoff:caller_request", 2) in total.top_failures
    assert total.qa_calls == 5 and total.qa_score is not None
    assert json.loads(json.dumps(report.to_dict()))["total"]["calls"] == 5  # JSON-ready
    with pytest.raises(NoCallsError, match="no calls of pack bank between 2020"):
        kpi_report(
            store, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC), "bank"
        )


def test_the_writer_scores_finished_calls_off_the_call(store, tmp_path):
    scorer = QaScorer(store)
    writer = StoreWriter(store, spool_dir=tmp_path / "spool", on_finished=scorer.submit)

    class Snapshot:  # what the session hands its sinks
        def __init__(self, data):
            self.call_id, self._data = data["call_id"], data

        def to_dict(self):
            return self._data

    ongoing = call("w1", "2026-11-05T09:00:00+00:00", ended_by=None)
    writer.update(Snapshot(ongoing))
    writer.flush()
    scorer.flush()
    assert store.get_scorecard("w1") is None  # not finished: nothing to score yet
    writer.update(Snapshot(dict(ongoing, ended_by="bot")))
    writer.flush()
    scorer.flush()
    assert store.get_scorecard("w1")["parts"][0]["score"] is not None
    writer.close()
    scorer.close()


def test_qa_run_show_and_report_kpis_as_commands(tmp_path):
    url = f"sqlite:///{tmp_path}/calls.db"
    db = Store(url)
    seed(db)
    db.close()
    run = voicebot("qa", "run", "--since", "2026-11-01", "--until", "2026-11-30", "--db", url)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("scored 5 call(s)")
    assert "bot part: mean score" in run.stdout and "agent part" in run.stdout
    show = voicebot("qa", "show", "t1", "--db", url)
    assert show.returncode == 0 and "agent part:" in show.stdout and "greeting" in show.stdout
    assert json.loads(voicebot("qa", "show", "t1", "--json", "--db", url).stdout)["call_id"] == "t1"
    assert voicebot("qa", "show", "nope", "--db", url).returncode == 1

    text = voicebot("report", "kpis", "--since", "2026-11-01", "--until", "2026-11-30", "--db", url)
    assert text.returncode == 0, text.stderr
    assert (
        text.stdout.startswith("5 call(s) from 2026-11-01") and "containment 60.0%" in text.stdout
    )
    csv = voicebot(
        "report", "kpis", "--since", "2026-11-01", "--until", "2026-11-30", "--csv", "--db", url
    ).stdout.splitlines()
    assert csv[0].startswith("day,pack,intent,calls,contained,containment,handoff_rate_")
    assert len(csv) == 1 + 5  # one row per day, pack and intent
    assert any(line.startswith("2026-11-03,bank,speak_to_agent,1,0,0.0,1.0") for line in csv)
    as_json = json.loads(
        voicebot(
            "report",
            "kpis",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-30",
            "--json",
            "--db",
            url,
        ).stdout
    )
    assert as_json["total"]["calls"] == 5

    empty = voicebot(
        "report", "kpis", "--since", "2020-01-01", "--until", "2020-02-01", "--db", url
    )
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.strip().endswith(
        "no calls between 2020-01-01T00:00:00+00:00 and 2020-02-01T00:00:00+00:00"
    )
    nothing = voicebot("qa", "run", "--since", "2020-01-01", "--until", "2020-02-01", "--db", url)
    assert nothing.returncode == 1 and "no finished calls since 2020-01-01" in nothing.stderr
    bad = voicebot("report", "kpis", "--since", "last tuesday", "--db", url)
    assert bad.returncode == 1 and "not a date or time: 'last tuesday'" in bad.stderr
    backwards = voicebot(
        "report", "kpis", "--since", "2026-11-30", "--until", "2026-11-01", "--db", url
    )
    assert backwards.returncode == 1 and "must be before --until" in backwards.stderr


def test_live_figures_on_metrics(tmp_path):
    db = Store(f"sqlite:///{tmp_path}/calls.db")
    scorer = QaScorer(db, observe=record_kpis)
    scorer.score(
        call("m1", "2026-11-06T09:00:00+00:00", pack="bank", survey={"asked": True, "score": 5})
    )
    scorer.score(with_agent("m2", "2026-11-06T10:00:00+00:00"))
    scorer.close()
    db.close()
    app = FastAPI()
    app.include_router(metrics_router())
    server = Server(app)
    try:
        page = urllib.request.urlopen(f"{server.url}/metrics", timeout=30).read().decode()
    finally:
        server.stop()
    lines = page.splitlines()

    def value(prefix: str) -> float:
        return float(next(line for line in lines if line.startswith(prefix)).rsplit(" ", 1)[1])

    assert value('voicebot_kpi_calls_total{outcome="contained",pack="bank"}') >= 1
    assert value('voicebot_kpi_calls_total{outcome="handoff",pack="bank"}') >= 1
    assert value('voicebot_csat_count{pack="bank"}') >= 1
    assert value('voicebot_handle_seconds_count{pack="bank",part="human"}') >= 1
    assert value('voicebot_qa_score_count{pack="bank",part="agent"}') >= 1
