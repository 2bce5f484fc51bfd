"""End to end: a real simulated call (VAD, Whisper, the dialog, Piper) that ends, answers
the post-call survey by voice, and is QA-scored in the store by the writer's hook; then the
KPI report reads it back."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from voicebot.handoff.service import HandoffConfig, HandoffService
from voicebot.pipeline.bot import Bot, BotConfig
from voicebot.qa.form import qa_path
from voicebot.qa.kpis import kpi_report
from voicebot.transports.simulated import CallerSegment, SimulatedCaller

pytestmark = pytest.mark.e2e

SURVEY = """survey:
  question: "Before you go, how satisfied were you with this call, from 1 to 5?"
  reprompt: "Sorry, please say a number from 1 to 5."
  thanks: "Thank you for your feedback."
"""


@pytest.fixture(scope="module")
def surveyed_bot(tmp_path_factory):
    """The bank bot with its QA form plus a survey (the pack opts in through its QA file)."""
    path = tmp_path_factory.mktemp("qa") / "bank.yaml"
    path.write_text(qa_path("bank").read_text(encoding="utf-8") + SURVEY, encoding="utf-8")
    instance = Bot(BotConfig(pack="bank", asr="tiny.en", qa=str(path)))
    yield instance
    instance.close()


def test_a_finished_call_is_scored_in_the_store(surveyed_bot, caller_audio, tmp_path):
    service = HandoffService(
        HandoffConfig(db_url=f"sqlite:///{tmp_path}/calls.db", spool_dir=str(tmp_path / "spool"))
    )
    lines = [
        "what's my balance",
        "nine four one zero seven",
        "no that's all, thank you, goodbye",
        "four out of five",
    ]
    caller = SimulatedCaller([CallerSegment(caller_audio(line)) for line in lines])
    record = asyncio.run(
        surveyed_bot.run_call(
            caller,
            realtime=False,
            caller_id="+15551230001",
            sinks=[service.writer],
            handoffs=service.writer,
        )
    )
    service.writer.flush()
    service.qa.flush()  # the scoring runs in the QA thread, after the record is stored
    bot_said = [t.text for t in record.turns if t.role == "bot"]
    assert record.ended_by == "bot"
    assert any("how satisfied" in text for text in bot_said), bot_said
    assert bot_said[-1].startswith("Thank you for your feedback.")
    assert record.survey == {"asked": True, "score": 4, "via": "speech"}

    stored = service.store.get_call(record.call_id)
    assert stored["survey"]["score"] == 4
    card = service.store.get_scorecard(record.call_id)
    assert card is not None and card["form"] == "bank-standard"
    results = {r["criterion"]: r for r in card["parts"][0]["results"]}
    assert results["greeting"]["verdict"] == "pass"
    assert results["greeting"]["evidence"][0]["turn"] == 0
    # The balance was read after "you're verified": the rule found both, in that order.
    verified = results["verified_before_account_detail"]
    assert verified["verdict"] == "pass"
    first, detail = verified["evidence"]
    assert "verified" in first["quote"] and "account has" in detail["quote"]
    assert results["no_sensitive_readback"]["verdict"] == "pass"  # the ZIP was not said back
    assert results["correct_handoff"]["verdict"] == "na"
    assert card["parts"][0]["score"] is not None

    now = datetime.now(UTC)
    report = kpi_report(service.store, now - timedelta(hours=1), now + timedelta(minutes=1))
    assert report.total.calls == 1 and report.total.csat == 4.0
    assert report.total.containment == 1.0 and report.rows[0].intent == "check_balance"
    assert report.total.qa_score == card["parts"][0]["score"]
    service.close()
