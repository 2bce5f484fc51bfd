"""The call transcript: turns, texts, intents, confidences and timings.

The record is the single source for the printed transcript, the JSON file, and (later) the
database and handoff packets. Sinks receive it after every change so nothing said is lost
if the process dies mid-call.
"""

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from voicebot.audio.io import write_text_atomic
from voicebot.pipeline.endpoint import EndpointDecision
from voicebot.privacy.redact import redact_json

# How a call ended (``CallRecord.ended_by``). The bot's doing: ``bot``, ``handoff``,
# ``timeout``. The caller's: ``caller`` (hung up, or the line went dead) and ``protocol``
# (the peer broke its protocol or flooded, and was dropped). The server's, below: it fell
# behind the caller's audio, failed, was stopped, or died mid-call (``interrupted``: marked
# by the next worker to start, see ``voicebot.store.lease``).
SERVER_ENDINGS = frozenset({"overload", "error", "shutdown", "interrupted"})


@dataclass
class Turn:
    """One turn of either side. Times are call seconds; ``timings`` holds the latency trail."""

    role: str  # "bot" | "caller"
    text: str
    start: float
    end: float | None = None
    kind: str = ""  # bot: greeting | answer | fallback | reprompt | farewell
    intent: str | None = None
    confidence: float | None = None
    margin: float | None = None
    asr: dict[str, Any] | None = None  # caller: avg_logprob, no_speech_prob, rtf, raw_text
    dropped: str | None = None  # caller: why the recognized text was not believed
    # caller: words (answered) | no_words (speech the recognizer could not make out: the bot
    # says it did not understand) | silence (noise Whisper judged no speech: not answered)
    heard: str | None = None
    planned_text: str | None = None  # bot: the full reply when it was cut off
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    policy: dict[str, Any] | None = None  # caller: the escalation decision and its signals
    endpoint: EndpointDecision | None = None  # caller: how the turn was ended (expected, seen)


@dataclass
class CallRecord:
    pack: str
    asr_model: str
    tts_voice: str
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    caller_audio: str | None = None
    caller_id: str | None = None
    telephony: dict[str, str] = field(default_factory=dict)  # the carrier's ids (call_sid)
    duration_s: float = 0.0
    ended_by: str | None = None  # bot | handoff | timeout | caller | protocol | SERVER_ENDINGS
    handoff_reason: str | None = None  # caller_request | low_confidence | repeated_failure | ...
    handoff: dict[str, Any] | None = None  # id, reason, explanation, signals, summary
    recording: str | None = None  # where the call audio is kept (path or URL)
    consent: dict[str, Any] | None = None  # recording consent: state, when (voicebot.privacy)
    muted: list[dict[str, Any]] = field(default_factory=list)  # spans kept out of the recording
    turns: list[Turn] = field(default_factory=list)
    # The bot's utterance being played, as far as the caller has heard it (kept up to date
    # while it plays): a process that dies mid-sentence leaves it here, and the recovery
    # makes it the call's last turn.
    speaking: Turn | None = None
    barge_ins: list[dict[str, float]] = field(default_factory=list)
    false_interruptions: list[float] = field(default_factory=list)  # bot paused, then resumed
    survey: dict[str, Any] | None = None  # post-call survey: asked, score (1-5), via

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary()
        return data

    def summary(self) -> dict[str, Any]:
        """Headline numbers: turn counts and voice-to-voice latency."""
        latencies = [
            t.timings["voice_to_voice_ms"]
            for t in self.turns
            if t.role == "caller" and "voice_to_voice_ms" in t.timings
        ]
        caller = [t for t in self.turns if t.role == "caller"]
        return {
            "caller_turns": sum(1 for t in caller if not t.dropped),
            "dropped_turns": sum(1 for t in caller if t.dropped),
            "bot_turns": sum(1 for t in self.turns if t.role == "bot"),
            "barge_ins": len(self.barge_ins),
            "voice_to_voice_ms": sorted(latencies),
        }


class RecordSink(Protocol):
    """Receives the record after every change (a JSON file here; a database elsewhere)."""

    def update(self, record: CallRecord) -> None: ...


class JsonFileSink:
    """Rewrites the transcript JSON atomically on every change: never half a file, masked
    once more like every store, owner-only (0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def update(self, record: CallRecord) -> None:
        data = redact_json(record.to_dict())
        write_text_atomic(self.path, json.dumps(data, indent=2, ensure_ascii=False))


def format_transcript(record: CallRecord) -> str:
    """A readable transcript for people: one line per turn with its key numbers."""
    lines = [f"call {record.call_id}  pack={record.pack}  asr={record.asr_model}"]
    for turn in record.turns:
        minutes, tenths = divmod(round(turn.start * 10), 600)
        stamp = f"[{minutes:02d}:{tenths / 10:04.1f}]"
        if turn.role == "bot":
            text = turn.text or "(interrupted before speaking)"
            notes = ["cut off by caller"] if turn.interrupted else []
            if "voice_to_voice_ms" in turn.timings:
                notes.append(f"answered in {turn.timings['voice_to_voice_ms']:.0f} ms")
            lines.append(f"{stamp} BOT     {text}" + (f"   ({', '.join(notes)})" if notes else ""))
        elif turn.dropped:
            what = "not understood" if turn.heard == "no_words" else "not speech"
            raw = turn.asr and turn.asr["raw_text"]
            lines.append(f"{stamp} CALLER  <{what}, {turn.dropped}: {raw!r}>")
        else:
            conf = f"{turn.confidence:.2f}" if turn.confidence is not None else "-"
            logprob = turn.asr["avg_logprob"] if turn.asr else float("nan")
            policy = turn.policy or {}
            # A slot answer ("4 5 6 7") is not a request: its intent scores mean nothing.
            heard = (
                "answer"
                if policy.get("signals", {}).get("answering")
                else f"intent {turn.intent} {conf}"
            )
            if policy.get("action") not in (None, "proceed"):
                heard += f", {policy['action']}"
            lines.append(f"{stamp} CALLER  {turn.text}   ({heard}, asr {logprob:.2f})")
    lines.append(f"ended by {record.ended_by} after {record.duration_s:.1f} s")
    return "\n".join(lines)
