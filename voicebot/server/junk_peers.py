"""Peers that misbehave on purpose, for the fault suite (``scripts/bench_faults.py``) and the
tests: floods of small messages, connections that say ``start`` and then nothing a call
would send, sockets that never say anything. Each speaks Twilio Media Streams to
``/twilio/media`` and the browser protocol to ``/ws/call``.

They connect to loopback addresses only (anything else is a ``ValueError``), and each one
is bounded: ``messages`` at most, for ``timeout_s`` at most.
"""

import asyncio
import contextlib
import ipaddress
import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import websockets

from voicebot.server.twilio_peer import SILENCE, TICK_S, media_message, start_message

# What a flood is made of: small messages a server must read and may not hang up on at
# once (Twilio adds event types over time; a mark nobody asked for is harmless).
_TWILIO_JUNK = (
    {"event": "party", "streamSid": "MZ0"},
    {"event": "mark", "streamSid": "MZ0", "mark": {"name": "nobody-asked"}},
    {"event": "connected", "protocol": "Call", "version": "1.0.0"},
)
_BROWSER_JUNK = ({"type": "dtmf", "digit": "x"},)  # not a key: ignored


@dataclass(frozen=True)
class Closed:
    """How a junk peer's connection ended: the server's close code and reason (None: it
    never closed within the time), and how many messages got out."""

    code: int | None
    reason: str
    sent: int


def check_loopback(url: str) -> None:
    """Floods go to this machine only."""
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"junk peers connect to loopback addresses only, not {host!r}")


class _Peer:
    """One connection speaking the protocol its URL's path names."""

    def __init__(self, url: str, headers: dict | None) -> None:
        check_loopback(url)
        self.url = url
        self.headers = headers or {}
        self.twilio = urlsplit(url).path.endswith("/twilio/media")
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.sent = 0
        self.ws: websockets.ClientConnection | None = None

    async def open(self) -> None:
        self.ws = await websockets.connect(
            self.url, additional_headers=self.headers, open_timeout=30, close_timeout=2
        )

    async def send(self, message: dict | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(message if isinstance(message, bytes) else json.dumps(message))
        self.sent += 1

    def start(self) -> dict:
        if self.twilio:
            return start_message(self.stream_sid, "CA" + uuid.uuid4().hex, "+15550009999")
        return {"type": "start", "sampleRate": 16000}

    def audio(self, tick: int) -> dict | bytes:
        """20 ms of silence from the caller's line."""
        if self.twilio:
            return media_message(self.stream_sid, tick, SILENCE)
        return bytes(640)

    def junk(self, n: int) -> dict:
        kinds = _TWILIO_JUNK if self.twilio else _BROWSER_JUNK
        return kinds[n % len(kinds)]

    async def closed(self, timeout_s: float) -> Closed:
        """Wait (reading and dropping what the server sends) until the server closes."""
        assert self.ws is not None
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            async with asyncio.timeout(timeout_s):
                async for _ in self.ws:
                    pass
        if self.ws.close_code is None:
            await self.ws.close()
            return Closed(None, "", self.sent)
        return Closed(self.ws.close_code, self.ws.close_reason or "", self.sent)


async def flood(
    url: str,
    *,
    messages: int = 10_000,
    audio: bool = False,
    headers: dict | None = None,
    timeout_s: float = 30.0,
) -> Closed:
    """A valid ``start``, then ``messages`` small messages as fast as the server takes
    them; with ``audio``, also 20 ms of silence every 20 ms (a flooder that passes for a
    call). Returns how the server closed it."""
    peer = _Peer(url, headers)
    await peer.open()
    deadline = time.monotonic() + timeout_s

    async def stream() -> None:
        t0 = time.monotonic()
        for tick in range(round(timeout_s / TICK_S)):
            await asyncio.sleep(max(0.0, t0 + tick * TICK_S - time.monotonic()))
            await peer.send(peer.audio(tick))

    line = None
    try:
        await peer.send(peer.start())
        if audio:
            line = asyncio.create_task(stream())
        for n in range(messages):
            if time.monotonic() > deadline:
                break
            await peer.send(peer.junk(n))
            if n % 50 == 0:
                await asyncio.sleep(0)  # let this process's other peers run too
    except websockets.ConnectionClosed:
        pass
    finally:
        if line is not None:
            line.cancel()
    return await peer.closed(max(1.0, deadline - time.monotonic()))


async def junk_start(
    url: str, *, fast_audio: bool = False, headers: dict | None = None, timeout_s: float = 30.0
) -> Closed:
    """A valid ``start`` and then nothing (or, ``fast_audio``, silence ten times faster than
    real time): junk that must not take a call slot. Returns how the server closed it."""
    peer = _Peer(url, headers)
    await peer.open()
    try:
        await peer.send(peer.start())
        if fast_audio:
            for tick in range(500):  # 10 s of audio in about 1 s
                await peer.send(peer.audio(tick))
                await asyncio.sleep(TICK_S / 10)
    except websockets.ConnectionClosed:
        pass
    return await peer.closed(timeout_s)


async def idle(url: str, *, headers: dict | None = None, timeout_s: float = 30.0) -> Closed:
    """A socket that connects and never says anything."""
    peer = _Peer(url, headers)
    await peer.open()
    return await peer.closed(timeout_s)
