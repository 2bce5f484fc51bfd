"""``voicebot serve`` through real sockets: a real uvicorn on 127.0.0.1, the real models, and
a Twilio peer that behaves as Twilio does (real-time paced frames, silence between turns,
marks echoed only after playback, ``clear`` honoured, the handshake signed with the auth
token). The calls API is read with a supervisor's token, /metrics with the scrape token."""

import asyncio
import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets
from twilio.request_validator import RequestValidator

from tests.servers import Server
from tests.signin import TWILIO_TOKEN, bearer
from tests.test_lines import START
from voicebot.server import ServerConfig, create_app
from voicebot.server.twilio import signature
from voicebot.server.twilio_peer import TICK_S, TwilioPeer
from voicebot.store import Store

SCRAPE = "test-scrape-token"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(bot, tmp_path_factory):
    transcripts = tmp_path_factory.mktemp("transcripts")
    recordings = tmp_path_factory.mktemp("recordings")
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('auth')}/auth.db")
    config = ServerConfig(
        max_calls=3,
        transcripts_dir=transcripts,
        recordings_dir=recordings,
        idle_timeout_s=2.0,
        twilio_auth_token=TWILIO_TOKEN,
        metrics_token=SCRAPE,
    )
    instance = Server(create_app(bot, config=config, store=store), ws_max_size=65536)
    instance.transcripts = transcripts
    instance.api = bearer(store, "supervisor")
    yield instance
    instance.stop()
    store.close()


def media(server):
    """The media stream's URL and the handshake headers Twilio would send."""
    url = f"{server.ws_url}/twilio/media"
    return url, {"X-Twilio-Signature": signature(TWILIO_TOKEN, url, [])}


def signed_peer(server, **options):
    return TwilioPeer(f"{server.ws_url}/twilio/media", auth_token=TWILIO_TOKEN, **options)


def call_record(server, call_id=None, caller_id=None):
    """The call's record from the API (the newest call of ``caller_id``)."""
    with httpx.Client(base_url=server.url, timeout=10, headers=server.api) as client:
        if call_id is None:
            rows = [r for r in client.get("/api/calls").json() if r["caller_id"] == caller_id]
            call_id = rows[0]["call_id"]
        return client.get(f"/api/calls/{call_id}").json()


def metric(server, name):
    auth = {"Authorization": f"Bearer {SCRAPE}"}
    text = httpx.get(f"{server.url}/metrics", timeout=10, headers=auth).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_full_call_with_barge_in_dtmf_and_stop(server, caller_audio):
    barge_ins = metric(server, "voicebot_barge_ins_total")
    # Synthesized before the call: rendering on the peer's loop would stall its line (and
    # trip the server's 2 s idle timeout on a busy machine).
    lost_words, yes_words = caller_audio("hi I lost my card yesterday"), caller_audio("yes please")

    async def scenario():
        async with signed_peer(server, caller_id="+15551230001") as peer:
            greeting = await peer.wait_bot_speaking()
            await asyncio.sleep(1.5)  # talk over the greeting
            lost = peer.say(lost_words)
            await peer.wait_said()
            await peer.wait_bot_done(after=lost.last_voiced)  # asks for the ZIP code
            typed = peer.tick
            await peer.press("94107#")
            await peer.wait_bot_done(after=typed)  # verified; asks for the card's last four
            typed = peer.tick
            await peer.press("4567")  # no "#": the digits go after a pause
            await peer.wait_bot_done(after=typed)  # "Shall I block the card ending in ...?"
            yes = peer.say(yes_words)
            await peer.wait_bot_done(after=yes.last_voiced)
            await peer.stop()
            await peer.wait_closed()
            return peer, greeting, lost

    peer, greeting, lost = asyncio.run(scenario())
    assert (peer.close_code, peer.close_reason) == (1000, "stream stopped")
    # The caller talked over the greeting: Twilio got a clear, and no bot audio followed it.
    # (How soon, as the caller hears it, is scripts/bench_load.py's question: a test on a
    # busy machine cannot bound wall time.)
    [(clear_tick, _)] = peer.log.clears
    assert greeting < lost.first_voiced <= clear_tick
    assert not [t for t in peer.log.bot_voiced if clear_tick < t <= clear_tick + 10]

    record = call_record(server, caller_id="+15551230001")
    caller = [t for t in record["turns"] if t["role"] == "caller"]
    bot = [t for t in record["turns"] if t["role"] == "bot"]
    assert bot[0]["kind"] == "greeting" and bot[0]["interrupted"]
    assert caller[0]["intent"] == "report_lost_or_stolen_card"
    # The ZIP answers a verification question: masked; the card's last four stays.
    assert [t["text"] for t in caller if t["kind"] == "dtmf"] == [
        "[verification answer]",
        "4 5 6 7",
    ]
    assert "Shall I block the card ending in 4 5 6 7?" in [t["text"] for t in bot]
    assert "ending in 4 5 6 7 is blocked" in bot[-1]["text"]
    assert record["ended_by"] == "caller" and len(record["barge_ins"]) == 1
    assert record["barge_ins"][0]["latency_ms"] <= 200  # on the line's clock: the VAD's onset
    saved = json.loads((server.transcripts / f"{record['call_id']}.json").read_text())
    assert len(saved["turns"]) == len(record["turns"])
    assert metric(server, "voicebot_barge_ins_total") == barge_ins + 1
    check_recording(server, record, lost)


def check_recording(server, record, lost):
    """The call's stereo recording: caller left, bot right, on the call's timeline."""
    response = httpx.get(
        f"{server.url}/api/calls/{record['call_id']}/recording", timeout=10, headers=server.api
    )
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 16000 and audio.shape[1] == 2
    assert abs(len(audio) / rate - record["duration_s"]) <= 0.1
    assert record["recording"].endswith(f"{record['call_id']}.wav")

    def loud(channel, start_s, end_s):
        part = audio[int(start_s * rate) : int(end_s * rate), channel].astype(float)
        return np.sqrt(np.mean(part**2)) > 300

    greeting = next(t for t in record["turns"] if t["kind"] == "greeting")
    assert loud(1, greeting["start"], greeting["start"] + 1.0)  # the bot greets on the right
    assert not loud(0, greeting["start"], greeting["start"] + 1.0)  # the caller is quiet
    said = lost.first_voiced * TICK_S
    assert loud(0, said, said + 1.0)  # the caller's words on the left
    missing = httpx.get(f"{server.url}/api/calls/nope/recording", timeout=10, headers=server.api)
    assert missing.status_code == 404


MEDIA = {"event": "media", "streamSid": "MZ1", "media": {"payload": "//////8="}}


async def close_of(server, *messages):
    """Send raw messages on a fresh media stream; the server's close code and reason."""
    url, headers = media(server)
    async with websockets.connect(url, additional_headers=headers) as ws:
        for message in messages:
            await ws.send(message if isinstance(message, str) else json.dumps(message))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 15)
        return ws.close_code, ws.close_reason


def with_media(payload):
    return {**MEDIA, "media": {"payload": payload}}


@pytest.mark.parametrize(
    ("messages", "code", "reason"),
    [
        (["{not json"], 1007, "malformed JSON"),
        (['["event"]'], 1007, 'must be a JSON object with an "event"'),
        ([MEDIA], 1008, '"media" before "start"'),
        (
            [{**START, "start": {**START["start"], "mediaFormat": {"encoding": "audio/l16"}}}],
            1003,
            "unsupported media format",
        ),
        ([{**START, "start": {"streamSid": "MZ1", "mediaFormat": "pcm"}}], 1003, "unsupported"),
        ([START, with_media("%%%not base64")], 1007, "not valid base64"),
        ([START, with_media("/" * 4000)], 1009, "media of 3000 bytes"),
        ([START, "x" * 70000], 1009, ""),  # over the server's WebSocket message limit
        ([START, START], 1008, 'a second "start"'),
    ],
)
def test_bad_input_gets_a_clear_close_code(server, messages, code, reason):
    got_code, got_reason = asyncio.run(close_of(server, *messages))
    assert got_code == code and reason in got_reason


def test_unknown_events_and_odd_sized_frames_are_tolerated_then_stop_ends_the_call(server):
    odd = with_media("/" * 132)  # 99 bytes: re-cut into 20 ms frames
    code, reason = asyncio.run(
        close_of(
            server, START, {"event": "party", "streamSid": "MZ1"}, *[odd] * 40, {"event": "stop"}
        )
    )
    assert (code, reason) == (1000, "stream stopped")


def test_dropped_and_silent_peers_are_finalized_and_persisted(server, caller_audio):
    words = caller_audio("hi I lost my card yesterday and I need to block it")  # before the call

    async def hang_up_mid_sentence():
        async with signed_peer(server, caller_id="+15550000001") as peer:
            await peer.wait_bot_done(quiet_s=0.5)
            peer.say(words)
            await asyncio.sleep(1.0)
        # leaving the block closes the socket mid-sentence, without "stop"

    async def go_quiet():
        url, headers = media(server)
        async with websockets.connect(url, additional_headers=headers) as ws:
            await ws.send(
                json.dumps(
                    {
                        **START,
                        "start": {**START["start"], "customParameters": {"From": "+15550000002"}},
                    }
                )
            )
            await ws.send(json.dumps(MEDIA))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()  # the bot greets; the peer never sends audio again
            return ws.close_code, ws.close_reason

    asyncio.run(hang_up_mid_sentence())
    assert asyncio.run(go_quiet()) == (1008, "no audio for 2 s")
    for caller_id in ("+15550000001", "+15550000002"):
        record = call_record(server, caller_id=caller_id)
        assert record["ended_by"] == "caller" and not record["active"]
        assert (server.transcripts / f"{record['call_id']}.json").exists()
    assert httpx.get(f"{server.url}/healthz").json()["active_calls"] == 0


def test_a_call_whose_dialog_fails_is_ended_by_error_and_keeps_what_was_said(
    server, caller_audio, monkeypatch
):
    """A bug mid-call (here the dialog raising on the caller's first words): the caller's
    line is closed 1011, the record says ``error`` (the server's doing, not the caller's) and
    keeps the greeting and the caller's turn; the server takes the next call as before."""
    from voicebot.dialog.manager import DialogManager

    words = caller_audio("what are your branch opening hours")

    def broken(self, text, transcript=None):
        raise RuntimeError("the back office answered garbage")

    monkeypatch.setattr(DialogManager, "handle_text", broken)
    errors_before = metric(server, 'voicebot_calls_total{ended_by="error",transport="twilio"}')

    async def call():
        async with signed_peer(server, caller_id="+15550000009") as peer:
            await peer.wait_bot_done(quiet_s=0.5)
            peer.say(words)
            await peer.wait_closed(timeout=120)
            return peer.close_code, peer.close_reason

    assert asyncio.run(call()) == (1011, "internal error")
    record = call_record(server, caller_id="+15550000009")
    assert record["ended_by"] == "error" and not record["active"]
    caller = [t for t in record["turns"] if t["role"] == "caller"]
    assert record["turns"][0]["kind"] == "greeting"
    assert caller and "branch opening" in caller[0]["text"].lower()  # as it was heard
    after = metric(server, 'voicebot_calls_total{ended_by="error",transport="twilio"}')
    assert after == errors_before + 1
    assert httpx.get(f"{server.url}/healthz").json()["active_calls"] == 0


def test_concurrent_calls_are_each_served_while_a_broken_peer_is_dropped(server, caller_audio):
    """Two callers at once get their own answers; a third socket that breaks the protocol
    mid-call is closed with a reason, its call finalized, and the other two carry on."""
    lost_words = caller_audio("hi I lost my card yesterday")  # synthesized before the calls
    hours_words = caller_audio("what are your branch opening hours")

    async def caller(caller_id, line):
        async with signed_peer(server, caller_id=caller_id) as peer:
            await peer.wait_bot_done(quiet_s=0.5)
            said = peer.say(line)
            await peer.wait_bot_done(after=said.last_voiced)
            await peer.stop()
            await peer.wait_closed()

    async def broken():
        async with signed_peer(server, caller_id="+15550000003") as peer:
            await peer.wait_bot_speaking()
            await peer.send_raw("{not json")
            await peer.wait_closed()
            return peer.close_code

    async def together():
        return await asyncio.gather(
            caller("+15551230001", lost_words),
            caller("+15551230002", hours_words),
            broken(),
        )

    *_, broken_code = asyncio.run(together())
    assert broken_code == 1007
    lost, hours = (call_record(server, caller_id=c) for c in ("+15551230001", "+15551230002"))
    assert [t["intent"] for t in lost["turns"] if t["role"] == "caller"] == [
        "report_lost_or_stolen_card"
    ]
    assert [t["intent"] for t in hours["turns"] if t["role"] == "caller"] == ["branch_hours"]
    assert "ZIP code" in lost["turns"][-1]["text"] and "open" in hours["turns"][-1]["text"]
    dropped = call_record(server, caller_id="+15550000003")
    assert dropped["ended_by"] == "protocol" and not dropped["active"]  # not the caller's end


def voice(server, form):
    """``POST /twilio/voice`` signed as Twilio signs it."""
    url = f"{server.url}/twilio/voice"
    signed = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
    return httpx.post(url, data=form, headers={"X-Twilio-Signature": signed})


def test_calls_beyond_capacity_hear_an_apology_and_are_hung_up(bot):
    config = ServerConfig(max_calls=1, twilio_auth_token=TWILIO_TOKEN)
    server = Server(create_app(bot, config=config))
    form = {"CallSid": "CA9", "From": "+15551230009", "To": "+15550001111"}

    async def scenario():
        async with signed_peer(server, caller_id="+15551230001") as first:
            await first.wait_bot_speaking()
            busy = voice(server, form).text
            async with signed_peer(server) as second:
                await second.wait_closed(timeout=20)
            await first.stop()
            await first.wait_closed()
        return busy, second

    try:
        busy, second = asyncio.run(scenario())
        free = voice(server, form).text
    finally:
        server.stop()
    assert "<Say>Sorry, all our lines are busy" in busy and "<Hangup/>" in busy
    assert second.close_code == 1013 and "at capacity: 1 calls" in second.close_reason
    # The apology played out before the hang-up: the mark came back after the audio.
    assert len(second.log.bot_voiced) * TICK_S > 2.0
    [(_, echoed_at)] = second.log.marks_echoed
    assert echoed_at > second.log.bot_voiced[-1]
    assert f'<Stream url="{server.ws_url}/twilio/media">' in free
    assert '<Parameter name="From" value="+15551230009"/>' in free


def test_our_signature_is_twilios():
    """Checked against Twilio, not against ourselves: the example Twilio publishes (its
    library's own test vector) and the official ``twilio`` package's RequestValidator."""
    example = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, list(example.items())) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    twilio = RequestValidator("an auth token")
    for url, params in [
        ("https://bot.example.com/twilio/voice", {"CallSid": "CA1", "From": "+15551230001"}),
        ("https://bot.example.com/twilio/voice?x=1", {"Body": "héllo wörld ☎", "A": ""}),
        ("wss://bot.example.com/twilio/media", {}),
    ]:
        ours = signature("an auth token", url, list(params.items()))
        assert twilio.validate(url, params, ours)
        assert not twilio.validate(url, params | {"From": "+1999"}, ours)


def test_with_an_auth_token_only_signed_twilio_requests_get_through(bot):
    config = ServerConfig(twilio_auth_token="secret", public_url="https://bot.example.com")
    server = Server(create_app(bot, config=config))
    form = {"CallSid": "CA1", "From": "+15551230001"}
    twilio = RequestValidator("secret")  # signs as Twilio would
    good = twilio.compute_signature("https://bot.example.com/twilio/voice", form)

    async def media(sig):
        headers = {"X-Twilio-Signature": sig}
        async with websockets.connect(f"{server.ws_url}/twilio/media", additional_headers=headers):
            pass

    try:
        signed = httpx.post(
            f"{server.url}/twilio/voice", data=form, headers={"X-Twilio-Signature": good}
        )
        forged = httpx.post(
            f"{server.url}/twilio/voice",
            data=form | {"From": "+1999"},
            headers={"X-Twilio-Signature": good},
        )
        unsigned = httpx.post(f"{server.url}/twilio/voice", data=form)
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(media("bad"))
        asyncio.run(media(twilio.compute_signature("wss://bot.example.com/twilio/media", {})))
    finally:
        server.stop()
    assert signed.status_code == 200
    assert '<Stream url="wss://bot.example.com/twilio/media">' in signed.text
    assert forged.status_code == unsigned.status_code == 403
    assert refused.value.response.status_code == 403


def test_without_a_token_twilio_is_refused_and_unsigned_caller_ids_identify_nobody(
    bot, tmp_path, caplog
):
    """No token: both Twilio routes refuse. ``--insecure-twilio``: calls are taken, but the
    caller ID an unsigned stream claims is not used (anyone could have sent it)."""
    closed = Server(create_app(bot, config=ServerConfig()))

    async def open_stream():
        async with websockets.connect(f"{closed.ws_url}/twilio/media"):
            pass

    try:
        refused = httpx.post(f"{closed.url}/twilio/voice", data={"From": "+15551230001"})
        with pytest.raises(websockets.InvalidStatus) as stream:
            asyncio.run(open_stream())
    finally:
        closed.stop()
    assert refused.status_code == 403 and "TWILIO_AUTH_TOKEN" in refused.json()["detail"]
    assert stream.value.response.status_code == 403

    store = Store(f"sqlite:///{tmp_path}/auth.db")
    server = Server(create_app(bot, config=ServerConfig(insecure_twilio=True), store=store))
    server.api = bearer(store, "supervisor")

    async def scenario():
        async with TwilioPeer(f"{server.ws_url}/twilio/media", caller_id="+15551230001") as peer:
            await peer.wait_bot_done(quiet_s=0.5)
            await peer.stop()
            await peer.wait_closed()
        return peer

    try:
        peer = asyncio.run(scenario())
        with httpx.Client(base_url=server.url, timeout=10, headers=server.api) as client:
            [row] = client.get("/api/calls").json()
    finally:
        server.stop()
        store.close()
    assert (peer.close_code, peer.close_reason) == (1000, "stream stopped")
    assert row["caller_id"] is None and row["ended_by"] == "caller"
    # Each start said what was open: Twilio refused, then Twilio unchecked.
    assert "Twilio calls are refused: set TWILIO_AUTH_TOKEN" in caplog.text
    assert "--insecure-twilio: Twilio requests are NOT checked" in caplog.text
