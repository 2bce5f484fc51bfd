"""The desktop softphone's protocol from Python, for tests and benchmarks that need an agent
on ``/desk/bridge/<handoff_id>`` without a browser: sign-in cookie, a ``start`` message,
20 ms PCM16 frames at 16 kHz sent in real time, the caller's audio received."""

import asyncio
import json
import time

import numpy as np
import websockets

from voicebot.audio.frames import FRAME_SAMPLES, SAMPLE_RATE
from voicebot.server.access import COOKIE
from voicebot.server.twilio_peer import TICK_S

VOICED = 300.0  # PCM16 RMS of a frame that counts as heard (the Twilio peer's threshold)


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if len(pcm) else 0.0


class Softphone:
    """One agent's softphone socket: what it says, and when it heard the caller."""

    def __init__(self, url: str, cookie: str, handoff_id: str, worker: str | None = None) -> None:
        """``worker``: the worker holding the caller, as the page asks a balancer for it."""
        self.url = f"{url.replace('http', 'ws', 1)}/desk/bridge/{handoff_id}"
        if worker is not None:
            self.url += f"?worker={worker}"
        self.cookie = cookie
        self.served_by: str | None = None  # the balancer's X-Voicebot-Worker, if any
        self.voiced_at: list[float] = []  # wall times of received voiced frames
        self.frames_heard = 0  # caller audio frames received
        self.events: list[dict] = []  # the page's text messages (turns, "ended"...)
        self._say: list[np.ndarray] = []
        self._sent_voiced: list[float] = []

    async def run(self, stop: asyncio.Event, hang_up: bool = False) -> None:
        """Talk until ``stop`` is set, then close the socket: after the page's hang-up
        message when ``hang_up`` (the agent ends the call), else as a dropped page."""
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        async with websockets.connect(self.url, additional_headers=headers) as ws:
            self.served_by = ws.response.headers.get("X-Voicebot-Worker")
            await ws.send(json.dumps({"type": "start", "sampleRate": SAMPLE_RATE}))
            reader = asyncio.create_task(self._read(ws))
            t0, tick = time.monotonic(), 0
            while not stop.is_set():
                await asyncio.sleep(max(0.0, t0 + tick * TICK_S - time.monotonic()))
                frame = self._say.pop(0) if self._say else np.zeros(FRAME_SAMPLES, np.int16)
                if rms(frame) > VOICED and not self._sent_voiced:
                    self._sent_voiced.append(time.monotonic())
                await ws.send(frame.astype("<i2").tobytes())
                tick += 1
            if hang_up:
                await ws.send(json.dumps({"type": "hangup"}))
            reader.cancel()

    def say(self, pcm: np.ndarray) -> None:
        """Queue 16 kHz PCM16 to speak, from the next frame on."""
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME_SAMPLES, np.int16)])
        self._sent_voiced.clear()
        self._say.extend(pcm.reshape(-1, FRAME_SAMPLES))

    def first_voiced_sent(self) -> float | None:
        return self._sent_voiced[0] if self._sent_voiced else None

    async def _read(self, ws) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                self.frames_heard += 1
                if rms(np.frombuffer(message, "<i2")) > VOICED:
                    self.voiced_at.append(time.monotonic())
            else:
                self.events.append(json.loads(message))
