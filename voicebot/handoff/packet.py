"""The handoff packet: everything a human agent needs so the caller never repeats themselves.

Built from the call record (the transcript with timestamps and confidences) and the handoff
reply (the policy decision and the dialog's state). It is plain JSON: what the store keeps,
what the agent desktop shows and what webhooks POST. It is masked like every store
(``voicebot.privacy.redact``) before the summary, and any LLM prompt, is made from it.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from voicebot.events import Reply
from voicebot.handoff.summary import structured_summary
from voicebot.pipeline.record import CallRecord
from voicebot.privacy.redact import redact_json

PACKET_VERSION = 1


def build_packet(record: CallRecord, reply: Reply) -> dict[str, Any]:
    """The packet for ``record`` handed off by ``reply`` (a ``kind == "handoff"`` reply).

    Call it once the reply's caller turn carries its intent and policy decision (the
    session does), so the transcript already holds the turn that caused the handoff."""
    decision = reply.decision
    assert decision is not None and decision.reason is not None, "a handoff reply has a reason"
    state = dict(reply.context or {})
    caller_turns = [t for t in record.turns if t.role == "caller" and not t.dropped]
    intents = [t.intent for t in caller_turns if t.intent and t.intent != "out_of_scope"]
    packet: dict[str, Any] = {
        "version": PACKET_VERSION,
        "handoff_id": uuid.uuid4().hex[:12],
        "call_id": record.call_id,
        "caller_id": record.caller_id,
        "telephony": record.telephony,  # e.g. Twilio's call_sid: the carrier's side of it
        "pack": record.pack,
        "created_at": datetime.now(UTC).isoformat(),
        "reason": decision.reason,
        "explanation": decision.explanation,
        "signals": decision.signals,
        "verification": {
            "customer_id": state.get("customer_id"),
            "verified": bool(state.get("verified")),
        },
        "intents": intents,
        "slots": state.get("slots", {}),
        "state": state,
        "sentiment": {
            "anger_total": state.get("anger_total", 0.0),
            "cues": sorted({c for t in caller_turns for c in _cues(t.policy)}),
        },
        "transcript": [_turn(t) for t in record.turns],
        "recording": record.recording,
        "consent": record.consent,  # may the agent expect a recording, and since when
        "muted": record.muted,  # spans of the recording kept silent
    }
    packet = redact_json(packet)
    packet["summary"] = structured_summary(packet)
    packet["summary_source"] = "structured"
    return packet


def _cues(policy: dict[str, Any] | None) -> list[str]:
    return list((policy or {}).get("signals", {}).get("anger_cues", ()))


def _turn(turn: Any) -> dict[str, Any]:
    out = {
        "role": turn.role,
        "text": turn.text,
        "start": turn.start,
        "end": turn.end,
    }
    if turn.role == "caller":
        out |= {
            "intent": turn.intent,
            "confidence": turn.confidence,
            "asr_logprob": turn.asr["avg_logprob"] if turn.asr else None,
            "dropped": turn.dropped,
        }
    return out
