"""SIP calls against real peers on 127.0.0.1 (tests/sip_peers.py): the bot registers with
Kamailio (digest credentials) and baresip calls it through Kamailio; SIPp plays scripted
callers and the agents' queue. Everything else is real: the server, the models, the store.

What the caller hears is checked by running our recognizer on the audio baresip received
over RTP, not by counting bytes. No assertion bounds wall time; peers have hang guards.
"""

import asyncio
import contextlib
import itertools
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.pcm import mulaw_decode, mulaw_encode
from voicebot.events import BotFrame, LineState
from voicebot.transports.sip import (
    CODECS,
    SipConfigError,
    SipLine,
    SipSettings,
    SipUserAgent,
    _RtpStream,
    check_listen,
    malformed,
)

WAIT_S = 120  # hang guard: a busy machine is slow, never this slow


def wait_for(predicate, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


# --- bad input and settings, on real sockets -----------------------------------------------

INVITE = (
    "INVITE sip:bot@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK1;rport\r\n"
    "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\n"
    "Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\n"
)


def with_sdp(head: str, sdp: str = SDP) -> bytes:
    return (
        f"{head}Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}".encode()
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"HELLO\r\n\r\n", "bad start line 'HELLO'"),
        (INVITE.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1).encode() + b"\r\n", "bad start line"),
        ((INVITE + "this is not a header\r\n\r\n").encode(), "bad header line 'this is"),
        (INVITE.replace("CSeq: 1 INVITE", "CSeq: one INVITE").encode() + b"\r\n", "bad CSeq"),
        (INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE").encode() + b"\r\n", "does not match"),
        (INVITE.replace("Call-ID: c1\r\n", "").encode() + b"\r\n", "no call-id header"),
        (INVITE.replace("SIP/2.0/UDP", "SIP/2.0 UDP").encode() + b"\r\n", "bad Via"),
        ((INVITE + "Content-Length: 99\r\n\r\nv=0").encode(), "Content-Length 99 but only 3"),
        (with_sdp(INVITE, "hello world\r\n"), "the SDP does not start with v=0"),
        (with_sdp(INVITE, SDP.replace("c=IN IP4 127.0.0.1\r\n", "")), "no c= address"),
    ],
)
def test_malformed_messages_are_named(data, problem):
    assert problem in malformed(data)


def test_well_formed_messages_pass():
    assert malformed(with_sdp(INVITE)) is None
    assert malformed(b"SIP/2.0 200 OK\r\n" + INVITE.split("\r\n", 1)[1].encode() + b"\r\n") is None


def test_settings_say_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(SipConfigError, match="HOST:PORT"):
        SipSettings.resolve("127.0.0.1")
    with pytest.raises(SipConfigError, match="not the wildcard"):
        SipSettings.resolve("0.0.0.0:5060")
    with pytest.raises(SipConfigError, match="--sip-trust"):
        SipSettings.resolve("192.0.2.10:5060")  # beyond loopback, nobody trusted
    with pytest.raises(SipConfigError, match="sip: or tel: URI"):
        SipSettings.resolve("127.0.0.1:5060", transfer_to="queue")
    creds = tmp_path / "sip.txt"
    creds.write_text("no colon here\n")
    with pytest.raises(SipConfigError, match="username:password"):
        SipSettings.resolve("127.0.0.1:5060", register="sip:bot@pbx", credentials_file=creds)
    creds.write_text("bot:s3cret\n")
    settings = SipSettings.resolve(
        "192.0.2.10:5060", register="sip:bot@pbx.example:5070", credentials_file=creds
    )
    assert settings.registrar == ("pbx.example", 5070) and settings.credentials == ("bot", "s3cret")
    monkeypatch.setenv("VOICEBOT_SIP_USERNAME", "envbot")
    monkeypatch.setenv("VOICEBOT_SIP_PASSWORD", "pw")
    assert SipSettings.resolve("127.0.0.1:5060", register="sip:b@pbx").credentials == (
        "envbot",
        "pw",
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(SipConfigError, match="cannot listen for SIP"):
            check_listen(taken.getsockname())


def test_serve_refuses_sip_flags_it_cannot_use():
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "voicebot", "serve", "--sip-listen", "0.0.0.0:5060", "--no-db"],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])},
        timeout=120,
    )
    assert run.returncode == 2 and "not the wildcard" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def exchange(data: bytes, server: tuple[str, int], source: str = "127.0.0.1") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind((source, 0))
        peer.settimeout(10)
        peer.sendto(data, server)
        return peer.recv(4096).decode()


def test_untrusted_and_malformed_requests_are_answered_403_and_400():
    """Loopback sources are all that is trusted by default; with --sip-trust, only those."""
    calls = []

    async def scenario():
        settings = SipSettings(listen=("127.0.0.1", 0), trusted=SipSettings.resolve(
            "127.0.0.1:0", trust=("127.0.0.2/32",)).trusted)  # fmt: skip
        agent = SipUserAgent(settings, calls.append)
        await agent.start()
        try:
            options = INVITE.replace("INVITE", "OPTIONS") + "\r\n"
            forbidden = await asyncio.to_thread(
                exchange, options.encode(), agent.address, "127.0.0.3"
            )
            allowed = await asyncio.to_thread(
                exchange, options.encode(), agent.address, "127.0.0.2"
            )
            bad = INVITE.replace("CSeq: 1 INVITE", "CSeq: x INVITE") + "\r\n"
            rejected = await asyncio.to_thread(exchange, bad.encode(), agent.address, "127.0.0.2")
            return forbidden, allowed, rejected
        finally:
            await agent.stop()

    forbidden, allowed, rejected = asyncio.run(scenario())
    assert forbidden.startswith("SIP/2.0 403 Forbidden") and "trusted network" in forbidden
    assert allowed.startswith("SIP/2.0 200 OK")
    assert rejected.startswith("SIP/2.0 400 Bad Request")
    assert "bad CSeq 'x INVITE'" in rejected and "Call-ID: c1" in rejected
    assert calls == []


class _Agent:
    def forget(self, line):
        pass


class _Call:
    call_id = "line-test"


def _rtp(seq: int, payload: bytes, pt: int = 0) -> bytes:
    header = bytes([0x80, pt]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
    return header + b"\x00\x00\x00\x07" + payload


def _key(seq: int, start_seq: int, key: int, end: bool) -> bytes:
    """An RFC 4733 event packet (all packets of one press share the start's timestamp)."""
    header = bytes([0x80, 101]) + seq.to_bytes(2, "big") + (start_seq * 160).to_bytes(4, "big")
    return header + b"\x00\x00\x00\x07" + bytes([key, 0x80 if end else 0, 0, 160])


def test_the_line_buffers_the_callers_rtp_ignores_strangers_and_always_sends():
    """One SipLine on real UDP sockets: the caller's packets, sent out of order, come out in
    order; a stranger's audio and key presses never reach the call, the caller's keys do; and
    the line sends a steady stream: silence while the bot is quiet, then the bot's audio."""
    levels = [1000 * n for n in range(1, 9)]  # packet n carries a constant: easy to follow

    async def scenario():
        loop = asyncio.get_running_loop()
        caller, stranger = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in "ab")
        for peer in (caller, stranger):
            peer.bind(("127.0.0.1", 0))
        caller.setblocking(False)
        keys: list[str] = []

        def on_key(key: str) -> None:
            keys.append(key)
            line.put_digit(key)

        _, rtp = await loop.create_datagram_endpoint(
            lambda: _RtpStream(CODECS[0], 101, caller.getsockname(), on_key, lambda: None),
            local_addr=("127.0.0.1", 0),
        )
        line = SipLine(_Agent(), _Call(), rtp, caller_id="+15551230001", idle_timeout_s=30)
        target = ("127.0.0.1", rtp.local_port)
        for n in (0, 2, 1, 3, 5, 4, 6, 7):  # pairs swapped on the way
            caller.sendto(_rtp(n + 1, mulaw_encode(np.full(160, levels[n], np.int16))), target)
            stranger.sendto(_rtp(n + 1, mulaw_encode(np.full(160, -20000, np.int16))), target)
        heard = [(await line.receive()).pcm for _ in range(30)]
        stranger.sendto(_key(100, 100, 9, True), target)  # a stranger presses 9
        for start, key in ((40, 4), (50, 11)):  # the caller presses 4, then #
            for n in range(3):
                caller.sendto(_key(start + n, start, key, n > 0), target)
        digits = ""
        for _ in range(100):
            frame = await line.receive()
            digits += frame.dtmf
            if digits:
                break
        for _ in range(5):  # the bot speaks: five frames of a loud constant
            await line.send(BotFrame(np.full(320, 12000, np.int16), 0.0, LineState.SPEAKING))
            await line.receive()
        for _ in range(5):
            await line.receive()
        sent = []
        with contextlib.suppress(BlockingIOError):
            while True:
                sent.append(caller.recv(2048))
        line.end(1000, "test over")
        line.close()
        caller.close()
        stranger.close()
        return heard, keys, digits, sent, rtp.ignored

    heard, keys, digits, sent, ignored = asyncio.run(scenario())
    medians = [int(np.median(f)) for f in heard]
    played = [m for m in medians if m != 0]
    assert min(medians) > -5000  # nothing of the stranger's audio
    firsts = [m for i, m in enumerate(played) if i == 0 or played[i - 1] != m]
    assert [round(m, -3) for m in firsts[:8]] == levels  # in order, each once
    assert keys == ["4", "#"] and digits == "4"  # the stranger's 9 never arrived
    assert ignored == 9  # eight audio packets and one key press, all the stranger's
    assert len(sent) >= 40
    seqs = [int.from_bytes(p[2:4], "big") for p in sent]
    stamps = [int.from_bytes(p[4:8], "big") for p in sent]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    assert all((b - a) % 2**32 == 160 for a, b in itertools.pairwise(stamps))
    assert all(p[1] & 0x7F == 0 and len(p) == 12 + 160 for p in sent)
    decoded = [int(np.median(mulaw_decode(p[12:]))) for p in sent]
    assert decoded[:20] == [0] * 20  # silence while the bot was quiet
    assert any(abs(d - 12000) < 600 for d in decoded[20:])  # then the bot's audio
