"""Prometheus metrics of the process, and ``GET /metrics``.

The metrics live in prometheus_client's process-wide registry (the library's convention):
one process runs one server, and the registry also carries the process's CPU and memory,
which the load benchmark reads. Call events come from each session's observer.
"""

import time
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.events import SpeechChunk, Transcript
from voicebot.pipeline.record import Turn
from voicebot.tts.base import TTS

_RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)

CALLS_ACTIVE = Gauge("voicebot_calls_active", "Calls in progress", ["transport"])
CALLS = Counter("voicebot_calls", "Finished calls", ["transport", "ended_by"])
CALLS_REFUSED = Counter("voicebot_calls_refused", "Calls refused at capacity", ["transport"])
REFUSED = Counter(
    "voicebot_refused",
    "Requests and connections refused by a limit or a failed check, by kind",
    ["kind"],
)
PROTOCOL_ERRORS = Counter(
    "voicebot_protocol_errors", "Lines closed for bad input", ["transport", "code"]
)
PEER_ERRORS = Counter(
    "voicebot_peer_errors", "Problems with what peers send (logged a few at a time)", ["kind"]
)
LATE_FRAMES = Counter(
    "voicebot_late_frames", "Bot frames sent over 60 ms after their caller frame", ["transport"]
)
RTP_IGNORED = Counter(
    "voicebot_rtp_ignored_packets", "RTP packets dropped: not from the caller's SDP address"
)
TRANSFERS = Counter("voicebot_transfers", "Handed-off calls sent on", ["transport", "outcome"])
TURNS = Counter("voicebot_turns", "Turns recorded", ["role"])
BARGE_INS = Counter("voicebot_barge_ins", "Bot turns cut off by the caller")
HANDOFFS = Counter("voicebot_handoffs", "Calls handed to a person", ["reason"])
VOICE_TO_VOICE = Histogram(
    "voicebot_voice_to_voice_seconds",
    "End of caller speech to the bot's first audio",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0),
)
ASR_RTF = Histogram(
    "voicebot_asr_rtf", "ASR compute / audio seconds", ["kind"], buckets=_RTF_BUCKETS
)
TTS_RTF = Histogram("voicebot_tts_rtf", "TTS compute / audio seconds", buckets=_RTF_BUCKETS)


def observe(kind: str, event: object) -> None:
    """Session observer: counts what happens in every call."""
    if kind in ("partial", "final") and isinstance(event, Transcript):
        if event.audio_s:
            ASR_RTF.labels(kind).observe(event.rtf)
        if kind == "final":
            TURNS.labels("caller").inc()
    elif kind == "dtmf":
        TURNS.labels("dtmf").inc()
    elif kind == "bot_turn" and isinstance(event, Turn):
        TURNS.labels("bot").inc()
        if "voice_to_voice_ms" in event.timings:
            VOICE_TO_VOICE.observe(event.timings["voice_to_voice_ms"] / 1000)
    elif kind == "barge_in":
        BARGE_INS.inc()
    elif kind == "handoff" and isinstance(event, dict):
        HANDOFFS.labels(str(event.get("reason"))).inc()


class MeteredTTS:
    """A TTS that reports its real-time factor per sentence (the protocol has no timings)."""

    def __init__(self, tts: TTS) -> None:
        self.inner = tts
        self.name = tts.name

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        start = time.perf_counter()
        for chunk in self.inner.synthesize(text):
            if len(chunk.pcm):
                TTS_RTF.observe((time.perf_counter() - start) / (len(chunk.pcm) / SAMPLE_RATE))
            yield chunk
            start = time.perf_counter()


def metrics_router() -> APIRouter:
    """``GET /metrics`` for admins and the scrape token (``--metrics-token-file``)."""
    from voicebot.server.access import METRICS, allow  # here: access imports this module

    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    @allow(METRICS)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
