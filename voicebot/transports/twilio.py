"""Twilio Media Streams: the bidirectional WebSocket of a ``<Connect><Stream>`` call.

Twilio sends JSON text messages: ``connected``, ``start`` (stream and call ids, custom
parameters, media format), ``media`` (base64 8 kHz mu-law, 20 ms each), ``dtmf``, ``mark``
(echoed once the audio queued before it has played) and ``stop``. The bot sends ``media``,
``mark`` and ``clear`` (drop the audio Twilio still has queued: barge-in).

``TwilioLine`` parses and serializes that protocol; the server owns the socket and hands it
every message. Bad input raises ``LineProtocolError`` with the close code the peer should
get. Unknown events are skipped (and logged, a few at a time: ``LiveLine.peer_error``):
Twilio adds event types over time, and hanging up on a real caller because of one would be
worse than ignoring it.
"""

import asyncio
import base64
import binascii
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.audio.pcm import mulaw_decode, mulaw_encode
from voicebot.audio.resample import StreamResampler
from voicebot.errors import LineProtocolError
from voicebot.events import BotFrame
from voicebot.transports.line import LiveLine

ENCODING = "audio/x-mulaw"
RATE = 8000
FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz: what Twilio sends
MAX_MEDIA_BYTES = 1600  # 200 ms: anything longer is not a live stream
DTMF_KEYS = frozenset("0123456789*#ABCD")


def media_message(stream_sid: str, mulaw: bytes) -> str:
    payload = base64.b64encode(mulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})


def parse(text: str | None) -> dict[str, Any]:
    """One message from Twilio as a dict with a string ``event``."""
    if text is None:
        raise LineProtocolError(1003, "Twilio Media Streams messages are JSON text, not binary")
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise LineProtocolError(1007, f"malformed JSON: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise LineProtocolError(1007, 'each message must be a JSON object with an "event"')
    return message


def _section(message: dict[str, Any], name: str) -> dict[str, Any]:
    section = message.get(name)
    if not isinstance(section, dict):
        raise LineProtocolError(1007, f'"{message["event"]}" message without a "{name}" object')
    return section


class TwilioLine(LiveLine):
    """``Transport`` over one Twilio media stream; ``handle`` each message the socket gets."""

    def __init__(self, send_text: Callable[[str], Awaitable[None]], **line: Any) -> None:
        super().__init__(rate=RATE, **line)
        self._send_text = send_text
        self._downsampler = StreamResampler(SAMPLE_RATE, RATE)
        self._marks: dict[str, asyncio.Event] = {}
        self._mark_ids = itertools.count(1)
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.parameters: dict[str, str] = {}

    @property
    def started(self) -> bool:
        return self.stream_sid is not None

    def handle(self, text: str | None, data: bytes | None = None) -> None:
        message = parse(text)
        event = message["event"]
        if event == "connected":
            return
        if event == "start":
            self._on_start(message)
        elif event == "stop":
            self.end(1000, "stream stopped")
        elif event == "mark":
            name = _section(message, "mark").get("name")
            if isinstance(name, str) and name in self._marks:
                self._marks[name].set()
        elif event in ("media", "dtmf"):
            if not self.started:
                raise LineProtocolError(1008, f'"{event}" before "start"')
            if event == "media":
                self._on_media(_section(message, "media"))
            else:
                self._on_dtmf(_section(message, "dtmf"))
        else:
            self.peer_error("twilio_unknown_event", f"ignoring unknown Twilio event {event[:40]!r}")

    def _on_start(self, message: dict[str, Any]) -> None:
        if self.started:
            raise LineProtocolError(1008, 'a second "start" on the same stream')
        start = _section(message, "start")
        stream_sid = start.get("streamSid") or message.get("streamSid")
        if not isinstance(stream_sid, str) or not stream_sid:
            raise LineProtocolError(1007, '"start" without a streamSid')
        fmt = start.get("mediaFormat")
        fmt = fmt if isinstance(fmt, dict) else {}
        if (fmt.get("encoding"), fmt.get("sampleRate"), fmt.get("channels")) != (ENCODING, RATE, 1):
            raise LineProtocolError(
                1003,
                f"unsupported media format {json.dumps(fmt)[:60]}: need {ENCODING} 8000 Hz mono",
            )
        params = start.get("customParameters") or {}
        self.parameters = (
            {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
        )
        self.call_sid = str(start.get("callSid") or "") or None
        account_sid = start.get("accountSid")
        self.telephony = {"carrier": "twilio", "stream_sid": stream_sid}
        if self.call_sid:
            self.telephony["call_sid"] = self.call_sid
        if isinstance(account_sid, str) and account_sid:
            self.telephony["account_sid"] = account_sid
        self.caller_id = self.parameters.get("From") or None  # our TwiML passes it
        self.stream_sid = stream_sid

    def _on_media(self, media: dict[str, Any]) -> None:
        if media.get("track", "inbound") != "inbound":
            return  # the bot's own audio when the stream was opened with both tracks
        payload = media.get("payload")
        if not isinstance(payload, str) or not payload:
            raise LineProtocolError(1007, "media without a payload")
        try:
            mulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise LineProtocolError(1007, "media payload is not valid base64") from exc
        if len(mulaw) > MAX_MEDIA_BYTES:
            raise LineProtocolError(
                1009, f"media of {len(mulaw)} bytes; a live stream sends {FRAME_BYTES} (20 ms)"
            )
        self.put_audio(mulaw_decode(mulaw))

    def _on_dtmf(self, dtmf: dict[str, Any]) -> None:
        digit = dtmf.get("digit")
        if not isinstance(digit, str) or digit not in DTMF_KEYS:
            raise LineProtocolError(1007, f"dtmf digit {str(digit)[:10]!r} is not a keypad key")
        self.put_digit(digit)

    # --- the bot's side ------------------------------------------------------------------

    async def _write_audio(self, frame: BotFrame) -> None:
        assert self.stream_sid is not None
        mulaw = mulaw_encode(self._downsampler.process(frame.pcm))
        if mulaw:
            await self._send_text(media_message(self.stream_sid, mulaw))

    async def _write_clear(self) -> None:
        assert self.stream_sid is not None
        self._downsampler = StreamResampler(SAMPLE_RATE, RATE)  # drop the cut words' filter tail
        await self._send_text(clear_message(self.stream_sid))

    async def play(self, pcm: np.ndarray) -> None:
        """Queue a whole recording (16 kHz PCM16) at once; Twilio plays it out in real time."""
        assert self.stream_sid is not None
        mulaw = mulaw_encode(StreamResampler(SAMPLE_RATE, RATE).process(pcm, last=True))
        for start in range(0, len(mulaw), FRAME_BYTES):
            await self._send_text(
                media_message(self.stream_sid, mulaw[start : start + FRAME_BYTES])
            )

    async def drain(self, timeout_s: float) -> bool:
        """Wait until Twilio has played everything sent so far (its echo of a mark)."""
        if self.stream_sid is None or self.hangup is not None:
            return False  # the caller is gone: nobody will echo the mark
        name = f"drain-{next(self._mark_ids)}"
        self._marks[name] = asyncio.Event()
        echoed = asyncio.create_task(self._marks[name].wait())
        hung_up = asyncio.create_task(self.ended.wait())  # "stop": no echo will come
        try:
            await self._send_text(mark_message(self.stream_sid, name))
            done, _ = await asyncio.wait(
                {echoed, hung_up}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        except ConnectionError:
            return False
        finally:
            echoed.cancel()
            hung_up.cancel()
            del self._marks[name]
        return echoed in done
