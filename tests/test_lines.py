"""Live lines without a network: Twilio's protocol, keypad grouping, request signatures,
and the echo canceller that keeps a speakerphone from making the bot interrupt itself."""

import asyncio
import base64
import hashlib
import hmac
import json

import numpy as np
import pytest

from voicebot.audio.apm import AudioCleanup
from voicebot.audio.pcm import mulaw_decode, mulaw_encode
from voicebot.errors import LineProtocolError
from voicebot.events import BotFrame, LineState, Transcript
from voicebot.server.twilio import signature, twiml_connect
from voicebot.transports.browser import BrowserLine
from voicebot.transports.twilio import TwilioLine
from voicebot.vad import make_vad

START = {
    "event": "start",
    "start": {
        "streamSid": "MZ1",
        "callSid": "CA1",
        "customParameters": {"From": "+15551230001"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def media(mulaw: bytes) -> str:
    return json.dumps({"event": "media", "media": {"payload": base64.b64encode(mulaw).decode()}})


async def _line() -> tuple[TwilioLine, list[dict]]:
    sent: list[dict] = []

    async def send_text(text: str) -> None:
        sent.append(json.loads(text))

    line = TwilioLine(send_text, idle_timeout_s=0.2, max_ahead_s=None)  # fed faster than real time
    line.handle(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    line.handle(json.dumps(START))
    line.handle(media(mulaw_encode(np.zeros(160, np.int16))))  # fills the resampler's 1.5 ms
    return line, sent


def test_twilio_line_converts_both_ways_and_clears():
    async def run():
        line, sent = await _line()
        tone = (np.sin(np.arange(1600) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)
        for half in (tone[:800], tone[800:]):  # 100 ms per message: re-cut into 20 ms frames
            line.handle(media(mulaw_encode(half)))
        frames = [await line.receive() for _ in range(5)]
        pcm = np.concatenate([f.pcm for f in frames])
        tone16 = (np.sin(np.arange(1600) / 16000 * 2 * np.pi * 440) * 8000).astype(np.int16)
        for start in range(0, 1600, 320):
            await line.send(
                BotFrame(tone16[start : start + 320], start / 16000, LineState.SPEAKING)
            )
        await line.interrupt()
        return line, frames, pcm, sent

    line, frames, pcm, sent = asyncio.run(run())
    assert line.caller_id == "+15551230001" and line.call_sid == "CA1"
    assert [f.t for f in frames] == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    assert 0.8 < np.abs(pcm[400:1200]).max() / 8000 < 1.2  # the tone, resampled to 16 kHz
    assert {m["event"] for m in sent[:-1]} == {"media"} and sent[-1]["event"] == "clear"
    assert all(m["streamSid"] == "MZ1" for m in sent)
    out = np.concatenate([mulaw_decode(base64.b64decode(m["media"]["payload"])) for m in sent[:-1]])
    assert 700 <= len(out) <= 800  # 100 ms at 8 kHz, less the resampler's start-up delay
    assert 0.8 < np.abs(out[200:]).max() / 8000 < 1.2


def test_keypad_digits_arrive_as_one_entry():
    async def run():
        line, _ = await _line()
        silence = mulaw_encode(np.zeros(160, np.int16))
        for digit in "12":
            line.handle(json.dumps({"event": "dtmf", "dtmf": {"digit": digit}}))
        typed = []
        for _ in range(100):  # 2 s of line audio: the entry closes 1.5 s after the last key
            line.handle(media(silence))
            frame = await line.receive()
            typed.append(frame.dtmf)
        for digit in "34#":
            line.handle(json.dumps({"event": "dtmf", "dtmf": {"digit": digit}}))
        line.handle(media(silence))
        typed.append((await line.receive()).dtmf)
        line.handle(json.dumps({"event": "stop"}))
        return typed, await line.receive(), line.hangup

    typed, after_stop, hangup = asyncio.run(run())
    assert [d for d in typed if d] == ["12", "34"]
    assert typed.index("12") == 75 and typed[-1] == "34"  # "#" sends at once
    assert after_stop is None and hangup.code == 1000


def test_dtmf_with_a_non_key_and_a_peer_that_goes_quiet():
    async def run():
        line, _ = await _line()
        with pytest.raises(LineProtocolError) as bad:
            line.handle(json.dumps({"event": "dtmf", "dtmf": {"digit": "x"}}))
        return bad.value, await line.receive(), line.hangup

    bad, frame, hangup = asyncio.run(run())
    assert bad.code == 1007 and "not a keypad key" in bad.reason
    assert frame is None and (hangup.code, hangup.reason) == (1008, "no audio for 0.2 s")


def test_twilio_signature_is_hmac_sha1_of_url_and_sorted_params():
    url = "https://example.com/twilio/voice?x=1"
    params = [("To", "+18005551212"), ("From", "+12349013030"), ("CallSid", "CA1")]
    data = url + "CallSidCA1From+12349013030To+18005551212"  # keys sorted, key then value
    expected = base64.b64encode(hmac.new(b"token", data.encode(), hashlib.sha1).digest()).decode()
    assert signature("token", url, params) == expected
    assert signature("token", url, params[::-1]) == expected
    assert signature("other", url, params) != expected
    assert 'value="a&lt;b&amp;c"' in twiml_connect("wss://x/twilio/media", "a<b&c")


def test_echo_cancellation_keeps_the_bots_voice_from_opening_turns(tts):
    bot = np.concatenate(
        [
            c.pcm
            for c in tts.synthesize(
                "For your security, what's the five digit ZIP code on your account? "
                "Please say it slowly."
            )
        ]
    )
    delay = 1600  # 100 ms of echo path
    echo = np.concatenate([np.zeros(delay, np.int16), (bot * 0.5).astype(np.int16)])[: len(bot)]

    def voiced_frames(processor) -> int:
        vad = make_vad("webrtc")
        voiced = 0
        for start in range(0, len(bot) - 320, 320):
            near = echo[start : start + 320]
            if processor is not None:
                processor.far_end(bot[start : start + 320])
                near = processor.near_end(near)
            voiced += start > len(bot) // 3 and vad.speech_prob(near) > 0.5
        return voiced

    raw = voiced_frames(None)
    cleaned = voiced_frames(AudioCleanup(echo_cancellation=True, echo_delay_ms=100).processor())
    assert raw > 100  # the echo alone would sound like a caller talking over the bot
    assert cleaned <= raw * 0.05


def test_a_peer_that_stops_reading_ends_the_call():
    async def run():
        async def stuck(text: str) -> None:
            await asyncio.Event().wait()  # the socket's buffers are full: the write never ends

        line = TwilioLine(stuck, send_timeout_s=0.1)
        line.handle(json.dumps(START))
        line.handle(media(mulaw_encode(np.zeros(320, np.int16))))
        await line.receive()
        await line.send(BotFrame(np.zeros(320, np.int16), 0.0, LineState.LISTENING))
        return await line.receive(), line.hangup

    frame, hangup = asyncio.run(run())
    assert frame is None
    assert (hangup.code, hangup.reason) == (1008, "client did not read the bot's audio for 0.1 s")


@pytest.mark.parametrize(
    ("text", "data", "code", "reason"),
    [
        (None, b"\0\0", 1008, 'audio before "start"'),
        ('{"type": "dtmf", "digit": "1"}', None, 1008, "'dtmf' before \"start\""),
        ('{"type": "start", "sampleRate": 11025}', None, 1003, "sampleRate must be one of"),
        ("{oops", None, 1007, "malformed JSON"),
    ],
)
def test_browser_line_refuses_bad_input(text, data, code, reason):
    async def run():
        async def sink(_: object) -> None:
            pass

        line = BrowserLine(sink, sink)
        with pytest.raises(LineProtocolError) as bad:
            line.handle(text, data)
        return bad.value

    error = asyncio.run(run())
    assert error.code == code and reason in error.reason


def test_browser_line_takes_48_khz_audio_and_sends_the_page_its_events(tts):
    async def run():
        texts: list[dict] = []
        audio: list[bytes] = []

        async def send_text(text: str) -> None:
            texts.append(json.loads(text))

        async def send_bytes(data: bytes) -> None:
            audio.append(data)

        line = BrowserLine(send_text, send_bytes)
        line.handle(json.dumps({"type": "start", "sampleRate": 48000, "callerId": "+1555"}), None)
        with pytest.raises(LineProtocolError):
            line.handle(None, b"\0")  # half a sample
        line.handle(None, np.zeros(1920, "<i2").tobytes())  # 40 ms at 48 kHz: one frame out
        frame = await line.receive()
        line.observe("partial", Transcript("I lost", -0.2, 0.01, 1.0, 0.1))
        await line.send(BotFrame(np.full(320, 1000, np.int16), frame.t, LineState.SPEAKING))
        await line.send(BotFrame(np.zeros(320, np.int16), 0.02, LineState.LISTENING))
        return line, frame, texts, audio

    line, frame, texts, audio = asyncio.run(run())
    assert line.caller_id == "+1555" and len(frame.pcm) == 320
    assert texts == [{"type": "partial", "text": "I lost", "dropped": None}]
    assert len(audio) == 1 and len(audio[0]) == 640  # silence is not sent


def test_a_line_the_server_fell_behind_on_catches_up_then_ends_by_overload():
    """Audio piling up unread while a call reads the line is the server's doing: the older
    half is dropped so the call hears the caller in step again; a server that keeps falling
    behind ends the call (1013, ``overload``). Audio arriving faster than the wall clock is
    the peer's (1008, ``protocol``)."""
    silence = media(mulaw_encode(np.zeros(160, np.int16)))

    async def behind():
        line, _ = await _line()
        line.handle(silence)
        line.begin()
        await line.receive()  # a call reads the line, then stops keeping up
        for _ in range(260):
            line.handle(silence)
        caught_up = (line.hangup, line.dropped_frames, line._inbound.qsize())
        for _ in range(1600):
            line.handle(silence)
        return caught_up, line.hangup

    async def fast():
        line = TwilioLine(lambda text: asyncio.sleep(0))
        line.handle(json.dumps(START))
        for _ in range(500):  # 10 s of audio at once
            line.handle(silence)
        return line.hangup

    ((hangup, dropped, queued), overloaded), flooded = asyncio.run(behind()), asyncio.run(fast())
    assert hangup is None and dropped == 126 and queued == 134  # 5 s behind: 2.5 s dropped
    assert (overloaded.code, overloaded.by) == (1013, "overload")
    assert "fell behind the caller's audio" in overloaded.reason
    assert (flooded.code, flooded.by) == (1008, "protocol")
    assert "faster than real time" in flooded.reason


class _Clock:
    """Stands in for the line module's ``time``: the test says when the far end plays."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_burst_after_a_stall_skips_silence_and_live_audio_but_never_the_bots_words(
    monkeypatch,
):
    """The far end plays what it is sent in real time, so a burst the call catches up with
    queues there as lasting delay. Past 80 ms queued, the line skips silence (nothing lost)
    and a live voice (the bridged agent: a glitch, not delay); the bot's own words go out."""
    from voicebot.transports import line as line_module

    clock = _Clock()
    monkeypatch.setattr(line_module, "time", clock)
    quiet = np.zeros(320, np.int16)
    voiced = np.full(320, 3000, np.int16)

    async def run():
        line, sent = await _line()
        sent.clear()
        counts = []
        for frame in [BotFrame(quiet, 0.0, LineState.LISTENING)] * 10:  # one instant
            await line.send(frame)
        counts.append(len(sent))
        for frame in [BotFrame(voiced, 0.0, LineState.SPEAKING, live=True)] * 3:
            await line.send(frame)
        counts.append(len(sent))
        for frame in [BotFrame(voiced, 0.0, LineState.SPEAKING)] * 3:
            await line.send(frame)
        counts.append(len(sent))
        clock.now += 0.2  # the far end played 200 ms: room again
        for frame in [BotFrame(voiced, 0.0, LineState.SPEAKING, live=True)] * 3:
            await line.send(frame)
        counts.append(len(sent))
        return counts, line.skipped_frames

    counts, skipped = asyncio.run(run())
    assert counts == [4, 4, 7, 10]  # 4 frames fill 80 ms; live frames wait for room
    assert skipped == 6 + 3
