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
from urllib.parse import urljoin
from xml.etree import ElementTree

import httpx
import numpy as np
import websockets

from voicebot.audio.pcm import float_to_pcm16, mulaw_decode, mulaw_encode
from voicebot.audio.resample import resample
from voicebot.server.twilio import signature

ACCOUNT_SID = "AC" + "0" * 32
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
        call_sid: str | None = None,
        account_sid: str = ACCOUNT_SID,
        parameters: dict[str, str] | None = None,
    ) -> None:
        """``auth_token``: sign the WebSocket handshake as Twilio does (X-Twilio-Signature
        over the stream URL), for a server that checks signatures. ``parameters``: the
        stream's ``<Parameter>``s (default: ``From`` = ``caller_id``, as our TwiML says)."""
        self.url = url
        self.caller_id = caller_id
        self.headers = dict(headers or {})
        if auth_token is not None:
            self.headers["X-Twilio-Signature"] = signature(auth_token, url, [])
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.call_sid = call_sid or new_sid("CA")
        self.account_sid = account_sid
        self.parameters = {"From": caller_id} if parameters is None else dict(parameters)
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
            start_message(
                self.stream_sid, self.call_sid, self.caller_id, self.parameters, self.account_sid
            )
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
        frames = caller_frames(audio)
        voiced = [i for i, f in enumerate(frames) if mulaw_rms(f) > VOICED_RMS]
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
            if frame is not SILENCE and mulaw_rms(frame) > VOICED_RMS:
                self.log.speech_wall[self.tick] = time.monotonic()
            await self.send(media_message(self.stream_sid, self.tick, frame))
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
                if mulaw_rms(frame) > VOICED_RMS:
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


def new_sid(prefix: str) -> str:
    """A Twilio-style id: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def start_message(
    stream_sid: str,
    call_sid: str,
    caller_id: str,
    parameters: dict[str, str] | None = None,
    account_sid: str = ACCOUNT_SID,
) -> dict:
    """Twilio's ``start`` for a stream of 8 kHz mu-law, as our TwiML asks for it
    (``parameters``: the stream's ``<Parameter>``s; default ``From`` = ``caller_id``)."""
    return {
        "event": "start",
        "start": {
            "streamSid": stream_sid,
            "accountSid": account_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": {"From": caller_id} if parameters is None else parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": stream_sid,
    }


def media_message(stream_sid: str, tick: int, frame: bytes) -> dict:
    """One 20 ms ``media`` message of the caller's line, as Twilio numbers them."""
    return {
        "event": "media",
        "streamSid": stream_sid,
        "media": {
            "track": "inbound",
            "chunk": str(tick + 1),
            "timestamp": str(round(tick * TICK_S * 1000)),
            "payload": base64.b64encode(frame).decode(),
        },
    }


def caller_frames(audio: np.ndarray) -> list[bytes]:
    """Caller speech (16 kHz float or PCM16) as the peer sends it: 20 ms mu-law frames at
    8 kHz, the last one padded with mu-law silence."""
    audio = audio.astype(np.float32) / 32768 if audio.dtype == np.int16 else audio
    mulaw = mulaw_encode(float_to_pcm16(resample(audio.astype(np.float32), 16000, 8000)))
    return [
        mulaw[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
        for i in range(0, len(mulaw), FRAME_BYTES)
    ]


def mulaw_rms(mulaw: bytes) -> float:
    return float(np.sqrt(np.mean(mulaw_decode(mulaw).astype(np.float32) ** 2)))


# --- the call around the stream -------------------------------------------------------------


@dataclass
class Verb:
    """One TwiML verb Twilio executed: its name, attributes, text and nested nouns."""

    name: str
    attrs: dict[str, str]
    text: str = ""
    nouns: list["Verb"] = field(default_factory=list)


def parse_twiml(document: str) -> list[Verb]:
    """The verbs of a TwiML ``<Response>`` in order (Twilio rejects anything else)."""
    root = ElementTree.fromstring(document)
    if root.tag != "Response":
        raise ValueError(f"TwiML must be a <Response>, got <{root.tag}>")
    return [_verb(element) for element in root]


def _verb(element: ElementTree.Element) -> Verb:
    return Verb(
        element.tag,
        dict(element.attrib),
        (element.text or "").strip(),
        [_verb(child) for child in element],
    )


class TwilioCall:
    """Twilio's side of a whole call, for tests: what Twilio does around the media stream.

    ``start`` posts the voice webhook (signed, with Twilio's standard parameters) and opens
    the ``<Connect><Stream>`` it answers as a ``TwilioPeer``, with the stream's
    ``<Parameter>``s. Once the server has closed the stream, ``follow`` does what Twilio does
    next: the ``<Connect action>`` request, then the verbs it answers in order. ``<Say>`` is
    noted, ``<Hangup>`` ends the call; ``<Dial>`` (``<Number>``, ``<Sip>``) and ``<Enqueue>``
    reach the far end, whose answer the test scripts (``dial_status``: Twilio's
    ``DialCallStatus``, or ``QueueResult`` for a queue), then their ``action`` is requested
    with the outcome and its TwiML followed in turn. Everything executed is in ``verbs``;
    ``dialed`` holds what was dialed (a SIP URI with its headers, a number, a queue name).
    """

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        *,
        caller_id: str = "+15551230001",
        to: str = "+15550001111",
        dial_status: str = "completed",
        dial_duration_s: int = 42,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token
        self.caller_id = caller_id
        self.to = to
        self.dial_status = dial_status
        self.dial_duration_s = dial_duration_s
        self.call_sid = new_sid("CA")
        self.verbs: list[Verb] = []
        self.dialed: list[tuple[str, str]] = []  # (noun, address)
        self.requests: list[tuple[str, dict[str, str]]] = []  # (url, form) Twilio posted
        self.hung_up = False
        self._connect: Verb | None = None

    def params(self, status: str = "in-progress") -> dict[str, str]:
        """Twilio's standard request parameters for this call."""
        return {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": status,
            "Called": self.to,
            "Caller": self.caller_id,
            "Direction": "inbound",
            "From": self.caller_id,
            "To": self.to,
        }

    async def post(self, url: str, form: dict[str, str]) -> list[Verb]:
        """A signed request as Twilio makes it; the verbs of the TwiML it answers."""
        url = urljoin(self.base_url + "/", url)
        sig = signature(self.auth_token, url, list(form.items()))
        self.requests.append((url, form))
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(url, data=form, headers={"X-Twilio-Signature": sig})
        response.raise_for_status()
        return parse_twiml(response.text)

    async def start(self, **peer: object) -> TwilioPeer:
        """The voice webhook, then the stream it connects (``async with`` the peer)."""
        verbs = await self.post("/twilio/voice", self.params("ringing"))
        self._connect = verbs[0]
        assert self._connect.name == "Connect", f"expected <Connect>, got {verbs}"
        [stream] = self._connect.nouns
        parameters = {p.attrs["name"]: p.attrs["value"] for p in stream.nouns}
        return TwilioPeer(
            stream.attrs["url"],
            caller_id=self.caller_id,
            auth_token=self.auth_token,
            call_sid=self.call_sid,
            parameters=parameters,
            **peer,  # type: ignore[arg-type]
        )

    async def follow(self) -> None:
        """After the stream ended: the ``<Connect>``'s continuation, as Twilio runs it."""
        assert self._connect is not None, "start() first"
        action = self._connect.attrs.get("action")
        if action is None:
            self.hung_up = True  # nothing follows <Connect>: Twilio ends the call
            return
        await self._run(await self.post(action, self.params()))

    async def _run(self, verbs: list[Verb]) -> None:
        for verb in verbs:
            self.verbs.append(verb)
            if verb.name == "Hangup":
                self.hung_up = True
                return
            if verb.name in ("Dial", "Enqueue"):
                form = self._dial(verb)
                if "action" in verb.attrs:  # the flow goes on in the action's TwiML
                    await self._run(await self.post(verb.attrs["action"], form))
                    return
        self.hung_up = True  # the document ran out

    def _dial(self, verb: Verb) -> dict[str, str]:
        """Reach the far end; the action request's form with how it answered."""
        form = self.params()
        if verb.name == "Enqueue":
            if self.dial_status == "hangup":  # the caller hung up while queued
                form["CallStatus"] = "completed"
            self.dialed.append(("Queue", verb.text))
            form |= {
                "QueueResult": self.dial_status,
                "QueueSid": new_sid("QU"),
                "QueueTime": str(self.dial_duration_s),
            }
        else:
            [noun] = verb.nouns or [Verb("Number", {}, verb.text)]
            self.dialed.append((noun.name, noun.text))
            answered = self.dial_status in ("completed", "answered")
            form |= {
                "DialCallStatus": self.dial_status,
                "DialCallSid": new_sid("CA"),
                "DialBridged": str(answered).lower(),
            }
            if answered:
                form["DialCallDuration"] = str(self.dial_duration_s)
        return form
