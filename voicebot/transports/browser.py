"""Browser calls: the ``/call`` page's WebSocket (microphone in, bot voice and transcript out).

The page speaks a small protocol of its own:

- page -> server, text: ``{"type": "start", "sampleRate": 16000, "callerId": "+1..."}`` first,
  then ``{"type": "dtmf", "digit": "4"}`` and ``{"type": "stop"}``;
- page -> server, binary: the microphone as PCM16 little-endian mono at ``sampleRate``;
- server -> page, binary: the bot's voice, PCM16 16 kHz, 20 ms frames (only while it talks);
- server -> page, text: live events (``partial``, ``final``, ``reply`` with the intent,
  ``bot_turn``, ``dtmf``, ``barge_in``, ``handoff``) and ``clear`` (stop playing: the caller
  barged in). The server closes the socket when the call ends.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.errors import LineProtocolError
from voicebot.events import BotFrame, Reply, Transcript
from voicebot.pipeline.record import Turn
from voicebot.transports.line import LiveLine

RATES = (8000, 16000, 24000, 32000, 44100, 48000)
MAX_CHUNK_S = 0.2  # a live microphone sends small chunks; a bigger one is not a live stream


class BrowserLine(LiveLine):
    """``Transport`` for one browser call; ``observe`` is the session observer for its page."""

    shows_partials = True  # the page prints them as the caller talks

    def __init__(
        self,
        send_text: Callable[[str], Awaitable[None]],
        send_bytes: Callable[[bytes], Awaitable[None]],
        **line: Any,
    ) -> None:
        super().__init__(rate=SAMPLE_RATE, **line)  # the page announces its rate in "start"
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._events: list[dict[str, Any]] = []
        self.rate: int | None = None

    @property
    def started(self) -> bool:
        return self.rate is not None

    def handle(self, text: str | None, data: bytes | None) -> None:
        if data is not None:
            self._on_audio(data)
            return
        try:
            message = json.loads(text or "")
        except ValueError as exc:
            raise LineProtocolError(1007, f"malformed JSON: {exc}") from exc
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise LineProtocolError(1007, 'each message must be a JSON object with a "type"')
        kind = message["type"]
        if kind == "start":
            self._on_start(message)
        elif not self.started:
            raise LineProtocolError(1008, f'{kind[:20]!r} before "start"')
        elif kind == "dtmf":
            self.put_digit(str(message.get("digit", ""))[:1])
        elif kind == "stop":
            self.end(1000, "caller hung up")
        else:
            raise LineProtocolError(1008, f"unknown message type {kind[:20]!r}")

    def _on_start(self, message: dict[str, Any]) -> None:
        if self.started:
            raise LineProtocolError(1008, 'a second "start"')
        rate = message.get("sampleRate")
        if rate not in RATES:
            raise LineProtocolError(1003, f"sampleRate must be one of {RATES}, got {rate!r}")
        self.set_input_rate(rate)
        caller_id = message.get("callerId")
        self.caller_id = str(caller_id)[:32] if caller_id else None
        self.rate = rate

    def _on_audio(self, data: bytes) -> None:
        if self.rate is None:
            raise LineProtocolError(1008, 'audio before "start"')
        if len(data) % 2:
            raise LineProtocolError(1007, "audio must be 16-bit samples (an even byte count)")
        if len(data) > 2 * self.rate * MAX_CHUNK_S:
            raise LineProtocolError(1009, f"audio chunk of {len(data)} bytes is too long")
        self.put_audio(np.frombuffer(data, dtype="<i2").astype(np.int16))

    def observe(self, kind: str, event: object) -> None:
        """Session observer: what the page shows live (sent with the next audio frame)."""
        if isinstance(event, Transcript) and kind in ("partial", "final"):
            self._events.append({"type": kind, "text": event.text, "dropped": event.dropped})
        elif kind == "reply" and isinstance(event, Reply):
            intent = event.intent
            self._events.append(
                {
                    "type": "reply",
                    "text": event.text,
                    "kind": event.kind,
                    "intent": intent.intent if intent else None,
                    "confidence": round(intent.confidence, 3) if intent else None,
                }
            )
        elif kind in ("bot_turn", "dtmf") and isinstance(event, Turn):
            self._events.append(
                {"type": kind, "text": event.text, "interrupted": event.interrupted}
            )
        elif kind == "barge_in":
            self._events.append({"type": "barge_in"})
        elif kind == "handoff" and isinstance(event, dict):
            self._events.append({"type": "handoff", "reason": event.get("reason")})

    async def _write_audio(self, frame: BotFrame) -> None:
        events, self._events = self._events, []
        for event in events:
            await self._send_text(json.dumps(event))
        if frame.pcm.any():
            await self._send_bytes(frame.pcm.astype("<i2").tobytes())

    async def _write_clear(self) -> None:
        await self._send_text(json.dumps({"type": "clear"}))
