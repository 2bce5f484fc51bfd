"""The 3-5 line summary a human agent reads before saying hello.

The structured summary is built from the dialog's own state, so it is always available,
instant and never invents anything. With an LLM backend configured, an LLM summary of the
transcript replaces it once ready (``voicebot.handoff.desk``), but the transfer never waits
for the LLM.
"""

from typing import Any

_REASONS = {
    "caller_request": "the caller asked for a person",
    "low_confidence": "the bot could not understand the caller",
    "repeated_failure": "the bot could not complete the request",
    "negative_sentiment": "the caller is upset",
    "verification_locked": "verification is locked after too many failures today",
}


def structured_summary(packet: dict[str, Any]) -> str:
    """Wants / identity / done / pending / why, one line each, from the dialog's state
    (``state["wants"]`` holds the requests as "report a lost or stolen card" phrases)."""
    state = packet["state"]
    if state.get("wants"):
        wants = "; ".join(state["wants"])
    else:
        said = next((t["text"] for t in packet["transcript"] if t["role"] == "caller"), "")
        wants = f'unclear; first said "{_clip(said)}"' if said else "nothing said yet"
    slots = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in state["slots"].items())
    lines = [f"Wants: {wants}" + (f" ({slots})." if slots else ".")]
    if state["verified"]:
        lines.append(f"Identity: verified (customer {state['customer_id']}).")
    elif state["customer_id"]:
        lines.append(f"Identity: matched customer {state['customer_id']}, NOT verified.")
    else:
        caller = state.get("caller_id") or "withheld"
        lines.append(f"Identity: not identified (caller ID {caller}).")
    lines.append("Bot did: " + (" ".join(state["done"]) if state["done"] else "nothing yet."))
    if state["pending"]:
        lines.append("Pending: " + "; ".join(state["pending"]) + ".")
    reason = _REASONS.get(packet["reason"], packet["reason"])
    detail = packet["explanation"]
    lines.append(f"Handoff: {reason}" + (f" ({detail})." if detail and detail != reason else "."))
    return "\n".join(lines)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
