"""Build call records for the QA eval set from short call scripts (eval/qa/scripts/*.yaml).

A script lists who said what; this writes the full record format of ``voicebot call
--transcript`` (times, the recognizer's and classifier's fields, the policy decision on
every caller turn, the handoff), so calls the bot cannot make (an agent who reads a card
number back, a bot that never confirms) can be scored like recorded ones. Times follow from
the words: the bot and agents speak 2.6 words a second, callers 2.4; each turn starts
``gap`` seconds after the previous one ended (default: a caller 0.6 s, the bot 1.0 s, an
agent 1.2 s), or ``overlap`` seconds before it ended (talking over it).

    python scripts/make_qa_calls.py eval/qa/scripts eval/qa/calls

Script keys: ``call_id``, ``pack``, ``caller_id``, ``started_at``, ``ended_by``, ``handoff``
(``reason``, ``explanation``), ``survey``, and ``turns``: each one of ``bot:``, ``caller:``,
``agent:`` or ``wait:`` (seconds of line silence: a queue, a hold) with optional ``kind``
(bot: greeting, answer, question, fallback, reprompt, farewell, handoff; caller: dtmf),
``intent``, ``confidence``, ``logprob``, ``answering``, ``gap``, ``overlap``, ``cut`` (the
caller cut the turn off after that many words).
"""

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from voicebot.handoff.sentiment import analyze

RATE = {"bot": 2.6, "agent": 2.6, "caller": 2.4}  # words a second
GAP = {"bot": 1.0, "agent": 1.2, "caller": 0.6}
_KEYS = {"bot", "caller", "agent", "wait", "kind", "intent", "confidence", "logprob",
         "answering", "gap", "overlap", "cut"}  # fmt: skip


def build(script: dict[str, Any], where: str) -> dict[str, Any]:
    clock = 0.8  # the greeting starts once the line is up
    turns: list[dict[str, Any]] = []
    transferred = False  # once an agent speaks, no dialog classifies the caller any more
    for number, spec in enumerate(script["turns"], start=1):
        unknown = set(spec) - _KEYS
        if unknown:
            raise SystemExit(f"{where}: turn {number}: unknown keys {sorted(unknown)}")
        if "wait" in spec:
            clock += float(spec["wait"])
            continue
        role = next(r for r in ("bot", "caller", "agent") if r in spec)
        transferred = transferred or role == "agent"
        text = str(spec[role])
        words = text.split()
        if "overlap" in spec:
            start = clock - float(spec["overlap"])
        else:
            start = clock + float(spec.get("gap", GAP[role]))
        said = " ".join(words[: spec["cut"]]) if "cut" in spec else text
        length = len(said.split()) / RATE[role]
        if spec.get("kind") == "dtmf":
            length = 0.0
        end = start + length
        turn = _turn(role, said, text, round(start, 3), round(end, 3), spec, transferred)
        turns.append(turn)
        clock = max(clock, end)
    record = {
        "pack": script["pack"],
        "asr_model": "tiny.en",
        "tts_voice": "joe",
        "call_id": script["call_id"],
        "started_at": script["started_at"],
        "caller_audio": None,
        "caller_id": script.get("caller_id"),
        "duration_s": round(clock + 0.5, 3),
        "ended_by": script.get("ended_by", "bot"),
        "handoff_reason": (script.get("handoff") or {}).get("reason"),
        "handoff": _handoff(script, turns),
        "recording": None,
        "turns": turns,
        "barge_ins": [],
        "false_interruptions": [],
        "survey": script.get("survey"),
    }
    return record


def _turn(
    role: str, said: str, text: str, start: float, end: float, spec: dict, transferred: bool
) -> dict:
    turn: dict[str, Any] = {
        "role": role,
        "text": said,
        "start": start,
        "end": end,
        "kind": spec.get("kind", "answer" if role == "bot" else ""),
        "intent": None,
        "confidence": None,
        "margin": None,
        "asr": None,
        "dropped": None,
        "planned_text": text if said != text else None,
        "interrupted": said != text,
        "timings": {},
        "policy": None,
    }
    if role != "caller":
        return turn
    if transferred:  # heard by the recognizer only
        turn["asr"] = {"avg_logprob": -0.25, "no_speech_prob": 0.05, "rtf": 0.3, "raw_text": said}
        turn["timings"] = {"speech_start": start, "speech_end": end}
        return turn
    confidence = float(spec.get("confidence", 0.95))
    intent = spec.get("intent", "out_of_scope" if spec.get("answering") else None)
    logprob = float(spec.get("logprob", -0.25))
    sentiment = analyze(said)
    turn.update(
        intent=intent,
        confidence=confidence,
        margin=round(confidence * 0.9, 4),
        timings={"speech_start": start, "speech_end": end, "endpoint": round(end + 0.5, 3)},
    )
    if spec.get("kind") == "dtmf":
        return turn
    turn["asr"] = {"avg_logprob": logprob, "no_speech_prob": 0.05, "rtf": 0.3, "raw_text": said}
    turn["policy"] = {
        "action": "proceed",
        "reason": None,
        "explanation": "",
        "signals": {
            "text": said,
            "intent": intent,
            "confidence": confidence,
            "margin": round(confidence * 0.9, 4),
            "asr_logprob": logprob,
            "no_speech_prob": 0.05,
            "anger": sentiment.anger,
            "anger_cues": list(sentiment.cues),
            "answering": bool(spec.get("answering")),
        },
    }
    return turn


def _handoff(script: dict[str, Any], turns: list[dict]) -> dict[str, Any] | None:
    handoff = script.get("handoff")
    if not handoff:
        return None
    return {
        "handoff_id": f"h-{script['call_id']}",
        "reason": handoff["reason"],
        "explanation": handoff.get("explanation", ""),
        "signals": {},
        "summary": handoff.get("summary", ""),
    }


def main(source: str, target: str) -> int:
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(source).glob("*.yaml")):
        record = build(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
        dest = out / f"{path.stem}.json"
        dest.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
