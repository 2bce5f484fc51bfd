"""A handed-off Twilio caller is sent on to the agents, through Twilio's whole flow: a real
uvicorn on 127.0.0.1, the real models, the store (SQLite), and ``TwilioCall`` doing what
Twilio does: the signed voice webhook, the media stream (real-time caller speech), the
``<Connect action>`` request once the bot has closed the stream, the ``<Dial>`` or
``<Enqueue>`` it answers, and the action callback with the far end's answer."""

import asyncio

import httpx
import pytest

from tests.servers import Server
from tests.signin import TWILIO_TOKEN
from voicebot.handoff.transfer import FALLBACK_MESSAGE, TransferTarget, TransferTargetError
from voicebot.server import ServerConfig, create_app
from voicebot.server.twilio import signature, transfer_outcome, twiml_transfer
from voicebot.server.twilio_peer import ACCOUNT_SID, TwilioCall, parse_twiml
from voicebot.store import Store, StoreWriter

AGENT_PLEASE = "can I speak to an agent please"


@pytest.fixture
def deployment(bot, tmp_path):
    """A server whose agents' line each test sets (``deployment(target)``)."""
    store = Store(f"sqlite:///{tmp_path}/calls.db")
    writer = StoreWriter(store, spool_dir=tmp_path / "spool")
    bot.handoffs, saved = writer, bot.handoffs  # the shared test bot; restored below
    servers = []

    def start(target: str | None, desk: bool = True) -> Server:
        """``desk=False``: the store keeps calls and handoffs, but no desk holds callers."""
        config = ServerConfig(
            twilio_auth_token=TWILIO_TOKEN,
            transfer_to=TransferTarget.parse(target) if target else None,
        )
        app = create_app(
            bot, config=config, history=store, sinks=[writer], store=store if desk else None
        )
        servers.append(Server(app, ws_max_size=65536))
        return servers[-1]

    start.store, start.writer = store, writer
    yield start
    for server in servers:
        server.stop()
    bot.handoffs = saved
    writer.close()
    store.close()


def handed_off_call(server: Server, caller_audio, dial_status: str) -> TwilioCall:
    """A caller who asks for a person at once; returns once Twilio's flow is over."""
    asking = caller_audio(AGENT_PLEASE)  # rendered before the line starts pacing

    async def scenario() -> TwilioCall:
        call = TwilioCall(server.url, TWILIO_TOKEN, dial_status=dial_status)
        async with await call.start() as peer:
            await peer.wait_bot_done(quiet_s=1.0)  # the consent line and the greeting
            peer.say(asking)
            await peer.wait_closed(timeout=60)  # the bot closes the stream after "let me..."
        assert (peer.close_code, peer.close_reason) == (1000, "call ended by handoff")
        await call.follow()
        return call

    return asyncio.run(scenario())


def transferred(deployment, caller_audio, target: str | None, dial_status: str, desk: bool = True):
    """The server, Twilio's side of the call, and the call's record and handoff as stored,
    once a caller handed off to ``target`` is through Twilio's flow."""
    server = deployment(target, desk)
    call = handed_off_call(server, caller_audio, dial_status)
    deployment.writer.flush()
    [row] = deployment.store.list_handoffs()
    return server, call, deployment.store.get_call(row["call_id"]), row


@pytest.mark.e2e
def test_a_handed_off_caller_is_dialed_to_the_agents_sip_line_with_the_packet_id(
    deployment, caller_audio
):
    server, call, record, row = transferred(
        deployment, caller_audio, "sip:agents@pbx.example", "completed"
    )
    handoff_id = row["handoff_id"]

    # Twilio's flow: webhook, stream, then <Connect action> -> <Dial><Sip> -> its action.
    urls = [url for url, _ in call.requests]
    assert urls == [
        f"{server.url}/twilio/voice",
        f"{server.url}/twilio/continue",
        f"{server.url}/twilio/dial?handoff={handoff_id}",
    ]
    dial, hangup = call.verbs
    assert dial.name == "Dial" and dial.attrs["action"] == urls[2]
    assert call.dialed == [("Sip", f"sip:agents@pbx.example?X-Voicebot-Handoff={handoff_id}")]
    assert hangup.name == "Hangup" and call.hung_up

    # The CallSid and AccountSid are in the record and the packet; the outcome on both.
    assert record["ended_by"] == "handoff" and record["handoff_reason"] == "caller_request"
    assert record["telephony"]["call_sid"] == call.call_sid
    assert row["packet"]["telephony"] == record["telephony"]
    assert record["telephony"]["account_sid"] == ACCOUNT_SID
    transfer = row["packet"]["transfer"]
    assert transfer["via"] == "twilio_dial" and transfer["outcome"] == "transferred"
    assert transfer["status"] == "completed" and transfer["duration_s"] == 42
    assert transfer["dial_call_sid"].startswith("CA") and transfer["apology"] is False
    assert record["handoff"]["transfer"] == transfer
    assert (row["status"], row["disposition"]) == ("closed", "transferred")
    # What the caller heard before the stream closed: the transfer message, in full.
    last = record["turns"][-1]
    assert last["role"] == "bot" and last["text"].startswith("Let me connect you")


@pytest.mark.e2e
def test_a_busy_number_is_recorded_and_the_caller_hears_a_callback_offer(deployment, caller_audio):
    _, call, record, row = transferred(deployment, caller_audio, "+1 (415) 555-0100", "busy")

    assert call.dialed == [("Number", "+14155550100")]
    dial, say, hangup = call.verbs
    assert dial.name == "Dial" and say.name == "Say" and hangup.name == "Hangup"
    assert say.text == FALLBACK_MESSAGE and "call you back" in say.text
    transfer = row["packet"]["transfer"]
    assert (transfer["outcome"], transfer["status"]) == ("failed", "busy")
    assert transfer["reason"] == "the agents' line was busy" and transfer["apology"] is True
    assert "duration_s" not in transfer  # nobody talked
    assert record["handoff"]["transfer"] == transfer
    assert row["status"] == "queued"  # still on the desk, for an agent to call back

    # A callback Twilio did not sign changes nothing.
    url = call.requests[-1][0]
    forged = call.params() | {"DialCallStatus": "completed"}
    wrong = signature("not the token", url, list(forged.items()))
    answer = httpx.post(url, data=forged, headers={"X-Twilio-Signature": wrong})
    assert answer.status_code == 403
    assert deployment.store.get_handoff(row["handoff_id"])["packet"]["transfer"] == transfer


@pytest.mark.e2e
def test_a_queue_name_enqueues_the_caller_and_a_hang_up_in_the_queue_is_recorded(
    deployment, caller_audio
):
    _, call, _, row = transferred(deployment, caller_audio, "support", "hangup")

    [enqueue, hangup] = call.verbs
    assert enqueue.name == "Enqueue" and enqueue.text == "support"
    assert enqueue.attrs["action"].endswith(f"/twilio/dial?handoff={row['handoff_id']}")
    assert hangup.name == "Hangup"
    transfer = row["packet"]["transfer"]
    assert transfer["via"] == "twilio_enqueue"
    assert (transfer["outcome"], transfer["status"]) == ("failed", "hangup")
    assert transfer["reason"] == "the caller hung up in the queue"
    assert transfer["apology"] is False  # nobody left to hear it
    assert transfer["duration_s"] == 42 and row["status"] == "queued"


@pytest.mark.e2e
def test_without_an_agents_line_the_caller_hears_the_callback_offer(deployment, caller_audio):
    # Without a desk either (with one, the caller holds for it: tests/test_bridge.py).
    _, call, record, row = transferred(deployment, caller_audio, None, "completed", desk=False)
    say, hangup = call.verbs
    assert (say.name, say.text, hangup.name) == ("Say", FALLBACK_MESSAGE, "Hangup")
    assert call.dialed == [] and record["handoff"]["transfer"]["outcome"] == "not_configured"
    assert row["status"] == "queued"


def test_the_continuation_of_a_call_it_does_not_know_is_a_hang_up(deployment):
    server = deployment("support")
    call = TwilioCall(server.url, TWILIO_TOKEN)
    verbs = asyncio.run(call.post("/twilio/continue", call.params()))
    assert [v.name for v in verbs] == ["Hangup"]
    unsigned = httpx.post(f"{server.url}/twilio/continue", data=call.params())
    assert unsigned.status_code == 403


def test_transfer_targets_and_their_twiml():
    assert TransferTarget.parse("tel:+44 20 7946 0958") == TransferTarget("number", "+442079460958")
    assert TransferTarget.parse("sip:q@pbx;transport=tcp").kind == "sip"
    assert TransferTarget.parse("Tier 2 support").kind == "queue"
    for bad, says in [
        ("sip:", "without an address"),
        ("12345", "not an E.164 number"),
        ("x" * 65, "neither an E.164 number"),
    ]:
        with pytest.raises(TransferTargetError, match=says):
            TransferTarget.parse(bad)
    assert TransferTarget.parse("+14155550100").sip_uri() == "tel:+14155550100"
    with pytest.raises(TransferTargetError, match="Twilio queue name"):
        TransferTarget.parse("support").sip_uri()

    # Headers already on the URI are kept; XML-special characters are escaped.
    sip = TransferTarget("sip", "sip:q@pbx?X-Site=a&b")
    [dial] = parse_twiml(twiml_transfer(sip, "h1", "https://bot/twilio/dial?handoff=h1"))
    assert dial.nouns[0].text == "sip:q@pbx?X-Site=a&b&X-Voicebot-Handoff=h1"
    assert dial.attrs["action"] == "https://bot/twilio/dial?handoff=h1"

    queue = TransferTarget("queue", "support")
    answered = transfer_outcome(queue, {"QueueResult": "bridged", "QueueTime": "7"})
    assert (answered["outcome"], answered["duration_s"]) == ("transferred", 7)
    odd = transfer_outcome(sip, {"DialCallStatus": "something-new"})
    assert odd["outcome"] == "failed" and "something-new" in odd["reason"]
