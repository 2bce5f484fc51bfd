"""A Twilio Media Streams peer, faithful to what Twilio does, for tests and load benchmarks.

It streams the caller's line in real time: one 20 ms mu-law ``media`` message every 20 ms
(paced on an absolute schedule), silence between utterances as a phone line does. It plays
the bot's audio in real time from a jitter buffer, echoes each ``mark`` only once the audio
queued before it has played, and honours ``clear`` (drops the queued audio and echoes the
pending marks at once). Everything is timestamped in ticks (20 ms of line time) and in wall
time, so callers can measure voice-to-voice latency, barge-in, and underruns.
"""

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import websockets

from voicebot.audio.pcm import float_to_pcm16, mulaw_decode, mulaw_encode
from voicebot.audio.resample import resample
from voicebot.server.twilio import signature

TICK_S = 0.02
FRAME_BYTES = 160
SILENCE = b"\xff" * FRAME_BYTES  # mu-law zero
VOICED_RMS = 300.0  # a played frame louder than this is the bot talking
JITTER_FRAMES = 3  # the peer starts playing once 60 ms are buffered


@dataclass
class Utterance:
    """One ``say``: the ticks its voiced audio starts and ends at."""

    first_voiced: int
    last_voiced: int


@dataclass
class PeerLog:
    bot_voiced: list[int] = field(default_factory=list)  # ticks the bot was heard
    clears: list[tuple[int, float]] = field(default_factory=list)  # (tick, wall) received
    marks_echoed: list[tuple[str, int]] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    speech_wall: dict[int, float] = field(default_factory=dict)  # voiced tick -> wall sent
    underruns: int = 0  # ticks the bot's audio ran dry mid-speech
    late_sends: int = 0  # ticks this peer itself sent over 20 ms late (a busy machine)


class TwilioPeer:
    """``async with TwilioPeer(url) as peer:`` then ``say``, ``press``, ``wait_*``, ``stop``."""

    def __init__(
        self,
        url: str,
        *,
        caller_id: str = "+15551230001",
        headers: dict | None = None,
        auth_token: str | None = None,
    ) -> None:
        """``auth_token``: sign the WebSocket handshake as Twilio does (X-Twilio-Signature
        over the stream URL), for a server that checks signatures."""
        self.url = url
        self.caller_id = caller_id
        self.headers = dict(headers or {})
        if auth_token is not None:
            self.headers["X-Twilio-Signature"] = signature(auth_token, url, [])
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.call_sid = "CA" + uuid.uuid4().hex
        self.log = PeerLog()
        self.tick = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._say: deque[bytes] = deque()
        self._buffer = bytearray()  # received, not yet played
        self._received = 0  # bytes received since the start
        self._played = 0
        self.heard = bytearray()  # what the caller heard, mu-law, one 20 ms frame per tick
        self._marks: deque[tuple[int, str]] = deque()  # (byte offset, name)
        self._playing = False
        self._seq = 0
        self._ws: websockets.ClientConnection | None = None
        self._tasks: list[asyncio.Task] = []
        self.closed = asyncio.Event()

    async def __aenter__(self) -> "TwilioPeer":
        self._ws = await websockets.connect(self.url, additional_headers=self.headers)
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send(
            {
                "event": "start",
                "start": {
                    "streamSid": self.stream_sid,
                    "accountSid": "AC" + "0" * 32,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": {"From": self.caller_id},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": self.stream_sid,
            }
        )
        self._tasks = [asyncio.create_task(self._line()), asyncio.create_task(self._receive())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()

    async def send(self, message: dict) -> None:
        """Send one protocol message (tests also send malformed ones with ``send_raw``)."""
        self._seq += 1
        await self.send_raw(json.dumps({"sequenceNumber": str(self._seq), **message}))

    async def send_raw(self, text: str | bytes) -> None:
        assert self._ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(text)

    # --- script --------------------------------------------------------------------------

    def say(self, audio: np.ndarray) -> Utterance:
        """Queue caller speech (16 kHz float or PCM16); it goes out after what is queued."""
        audio = audio.astype(np.float32) / 32768 if audio.dtype == np.int16 else audio
        mulaw = mulaw_encode(float_to_pcm16(resample(audio.astype(np.float32), 16000, 8000)))
        frames = [
            mulaw[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
            for i in range(0, len(mulaw), FRAME_BYTES)
        ]
        voiced = [i for i, f in enumerate(frames) if _rms(f) > VOICED_RMS]
        start = self.tick + len(self._say)
        utterance = (
            Utterance(start + voiced[0], start + voiced[-1]) if voiced else Utterance(start, start)
        )
        self._say.extend(frames)
        self.log.utterances.append(utterance)
        return utterance

    async def press(self, digits: str) -> None:
        for digit in digits:
            await self.send(
                {
                    "event": "dtmf",
                    "streamSid": self.stream_sid,
                    "dtmf": {"track": "inbound_track", "digit": digit},
                }
            )

    async def stop(self) -> None:
        await self.send(
            {"event": "stop", "streamSid": self.stream_sid, "stop": {"callSid": self.call_sid}}
        )

    async def wait_said(self, timeout: float = 30.0) -> None:
        await self._until(lambda: not self._say, timeout)

    async def wait_bot_speaking(self, after: int = 0, timeout: float = 30.0) -> int:
        """The first tick (>= ``after``) the bot was heard."""
        await self._until(lambda: any(t >= after for t in self.log.bot_voiced), timeout)
        return next(t for t in self.log.bot_voiced if t >= after)

    async def wait_bot_done(
        self, after: int = 0, quiet_s: float = 1.0, timeout: float = 30.0
    ) -> None:
        """Until the bot has spoken after tick ``after`` and then been quiet for ``quiet_s``."""

        def done() -> bool:
            heard = [t for t in self.log.bot_voiced if t >= after]
            return bool(heard) and (self.tick - heard[-1]) * TICK_S >= quiet_s

        await self._until(done, timeout)

    async def wait_closed(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout)

    async def _until(self, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.closed.is_set():
                raise ConnectionError(
                    f"server closed the stream: {self.close_code} {self.close_reason}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError("the call did not get there in time")
            await asyncio.sleep(TICK_S)

    # --- the line ------------------------------------------------------------------------

    async def _line(self) -> None:
        """Every 20 ms: send one caller frame, play one bot frame."""
        t0 = time.monotonic()
        while not self.closed.is_set():
            due = t0 + self.tick * TICK_S
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -TICK_S:
                self.log.late_sends += 1
            frame = self._say.popleft() if self._say else SILENCE
            if frame is not SILENCE and _rms(frame) > VOICED_RMS:
                self.log.speech_wall[self.tick] = time.monotonic()
            await self.send(
                {
                    "event": "media",
                    "streamSid": self.stream_sid,
                    "media": {
                        "track": "inbound",
                        "chunk": str(self.tick + 1),
                        "timestamp": str(round(self.tick * TICK_S * 1000)),
                        "payload": base64.b64encode(frame).decode(),
                    },
                }
            )
            await self._play()
            self.tick += 1

    async def _play(self) -> None:
        played = SILENCE
        if not self._playing:  # prebuffer, unless a mark says nothing more is coming
            self._playing = len(self._buffer) >= JITTER_FRAMES * FRAME_BYTES or (
                bool(self._buffer) and bool(self._marks)
            )
        if self._playing:
            if not self._buffer:
                self._playing = False  # ran dry: rebuffer
                if self.log.bot_voiced and self.tick - self.log.bot_voiced[-1] <= 1:
                    self.log.underruns += 1
            else:
                frame = bytes(self._buffer[:FRAME_BYTES])
                del self._buffer[:FRAME_BYTES]
                self._played += len(frame)
                played = frame.ljust(FRAME_BYTES, b"\xff")
                if _rms(frame) > VOICED_RMS:
                    self.log.bot_voiced.append(self.tick)
        self.heard.extend(played)
        while self._marks and self._marks[0][0] <= self._played:
            await self._echo(self._marks.popleft()[1])

    def heard_audio(self, since_tick: int = 0) -> np.ndarray:
        """What the caller heard from tick ``since_tick`` on, as 16 kHz float audio."""
        mulaw = bytes(self.heard[since_tick * FRAME_BYTES :])
        pcm = mulaw_decode(mulaw).astype(np.float32) / 32768
        return resample(pcm, 8000, 16000)

    async def _echo(self, name: str) -> None:
        self.log.marks_echoed.append((name, self.tick))
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def _receive(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":
                    payload = base64.b64decode(message["media"]["payload"])
                    self._buffer.extend(payload)
                    self._received += len(payload)
                elif event == "mark":
                    self._marks.append((self._received, message["mark"]["name"]))
                elif event == "clear":
                    self.log.clears.append((self.tick, time.monotonic()))
                    self._played += len(self._buffer)
                    self._buffer.clear()
                    self._playing = False
                    while self._marks:
                        await self._echo(self._marks.popleft()[1])
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason or ""
            self.closed.set()


def _rms(mulaw: bytes) -> float:
    return float(np.sqrt(np.mean(mulaw_decode(mulaw).astype(np.float32) ** 2)))
