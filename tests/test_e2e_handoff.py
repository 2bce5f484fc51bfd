"""End-to-end handoffs: real audio through VAD, Whisper, the classifier, the policy, the
store (SQLite file) and Piper; the packet is durable before the transfer message plays."""

import asyncio
import time

import pytest

from voicebot.store import Store, StoreWriter
from voicebot.transports.simulated import CallerSegment, SimulatedCaller

pytestmark = pytest.mark.e2e


@pytest.fixture
def writer(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    instance = StoreWriter(store, spool_dir=tmp_path / "spool")
    yield instance
    instance.close()
    store.close()


class SlowDesk:
    """A handoff sink that takes a second to commit (a slow database), then commits."""

    def __init__(self, writer):
        self.writer, self.committed_at = writer, None

    def submit(self, packet):
        time.sleep(1.0)
        self.writer.submit(packet)
        self.committed_at = time.monotonic()


def call(bot, caller_audio, lines, writer, handoffs=None):
    caller = SimulatedCaller([CallerSegment(caller_audio(line)) for line in lines])
    record = asyncio.run(
        bot.run_call(
            caller,
            realtime=False,
            caller_id="+15551230001",
            sinks=[writer],
            handoffs=handoffs or writer,
            recording="build/test/call.wav",
        )
    )
    writer.flush()
    return record


def test_angry_caller_is_handed_off_with_a_packet_in_the_store(bot, caller_audio, writer):
    record = call(
        bot,
        caller_audio,
        ["hi I lost my card", "this is ridiculous, I want to talk to a real person"],
        writer,
    )
    assert record.ended_by == "handoff"
    assert record.handoff_reason in ("caller_request", "negative_sentiment")
    [row] = writer.store.list_handoffs()
    packet = row["packet"]
    assert row["call_id"] == record.call_id and row["reason"] == record.handoff_reason
    assert "Wants: report a lost or stolen card" in row["summary"]
    assert "ridiculous" in packet["sentiment"]["cues"]
    assert packet["verification"] == {"customer_id": "c1", "verified": False}
    assert packet["recording"] == "build/test/call.wav"
    caller_said = [t["text"].lower() for t in packet["transcript"] if t["role"] == "caller"]
    assert "ridiculous" in caller_said[-1]  # the turn that caused it is in the packet
    assert all(t["start"] is not None for t in packet["transcript"])
    # Every turn, the transfer message included, is in the store.
    assert writer.store.turn_count(record.call_id) == len(record.turns)
    policy = [t.policy for t in record.turns if t.role == "caller"]
    assert policy[0]["action"] == "proceed" and policy[-1]["action"] == "handoff"
    assert policy[-1]["signals"]["asr_logprob"] < 0


def test_transfer_message_waits_for_the_commit(bot, caller_audio, writer):
    desk = SlowDesk(writer)
    record = call(bot, caller_audio, ["can I speak to an agent please"], writer, desk)
    assert record.handoff_reason == "caller_request" and desk.committed_at is not None
    turn = next(t for t in record.turns if t.role == "caller")
    # The call clock follows the commit: no transfer audio before the packet was durable.
    assert turn.timings["first_audio"] - turn.timings["reply_ready"] >= 1.0
    assert writer.store.list_handoffs()[0]["call_id"] == record.call_id
