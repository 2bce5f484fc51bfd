"""Where a handed-off caller is sent: the agents' line, and how sending them there ended.

One setting names the agents' line for every transport (``voicebot serve --transfer-to``,
else the pack's ``transfer_to``): an E.164 number, a SIP URI or a Twilio queue name. SIP
blind-transfers by REFER to a SIP or ``tel:`` URI; Twilio dials a number or SIP URI
(``<Dial><Number>``, ``<Dial><Sip>``) or puts the caller in the queue (``<Enqueue>``). The
packet id travels as ``HANDOFF_HEADER`` wherever the protocol carries headers, so the desk
that answers can pop the packet up.

A transfer's outcome is one dict on the call record's ``handoff["transfer"]`` and on the
stored packet (``Store.record_transfer``): ``via``, ``target``, ``outcome`` (``transferred``,
``failed``, ``refused``, ``not_configured``; ``dialing`` while Twilio dials), ``status``
(the protocol's own word: a SIP status code, Twilio's ``DialCallStatus`` or
``QueueResult``) and ``reason`` in words. Only ``transferred`` closes the handoff; otherwise
it stays queued for an agent to call back, and the caller is told so (``FALLBACK_MESSAGE``).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

from voicebot.errors import VoicebotError

HANDOFF_HEADER = "X-Voicebot-Handoff"
TransferSink = Callable[[str, dict[str, Any]], None]  # Store.record_transfer(handoff_id, ...)
FALLBACK_MESSAGE = (
    "I'm sorry, I couldn't put you through to an agent right now. An agent has the "
    "details of this call and will call you back. Goodbye."
)
# Twilio: queue names are at most 64 characters; ours are plain words so none is mistaken
# for a number or a URI typed wrong.
_QUEUE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 _.-]{0,63}")


class TransferTargetError(VoicebotError):
    """A transfer target is neither an E.164 number, a SIP URI nor a queue name."""

    exit_code = 2


@dataclass(frozen=True)
class TransferTarget:
    """The agents' line: ``kind`` says how ``address`` is reached."""

    kind: Literal["number", "sip", "queue"]
    address: str  # "+15551230000", "sip:agents@pbx.example", "support"

    @classmethod
    def parse(cls, text: str, where: str = "--transfer-to") -> "TransferTarget":
        """``+15551230000`` or ``tel:+15551230000`` (checked with phonenumbers), ``sip:``
        or ``sips:`` URIs, else a queue name; ``TransferTargetError`` says which it is not."""
        text = text.strip()
        if text.lower().startswith(("sip:", "sips:")):
            if not text.split(":", 1)[1].strip("/"):
                raise TransferTargetError(f"{where}: {text!r} is a SIP URI without an address")
            return cls("sip", text)
        number = text[4:] if text.lower().startswith("tel:") else text
        if number.startswith("+") or number[:1].isdigit():
            try:
                parsed = phonenumbers.parse(number, None)
            except phonenumbers.NumberParseException as exc:
                raise TransferTargetError(
                    f"{where}: {text!r} is not an E.164 number (+ and country code): {exc}"
                ) from exc
            if not phonenumbers.is_possible_number(parsed):
                raise TransferTargetError(f"{where}: {text!r} is not a possible phone number")
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            return cls("number", e164)
        if not _QUEUE_NAME.fullmatch(text):
            raise TransferTargetError(
                f"{where}: {text!r} is neither an E.164 number (+15551230000), a SIP URI "
                "(sip:agents@pbx.example) nor a queue name (a letter, then up to 63 letters, "
                "digits, spaces, '_', '.' or '-')"
            )
        return cls("queue", text)

    def sip_uri(self) -> str:
        """Where a SIP REFER can send the caller (a queue name is Twilio's only: refused)."""
        if self.kind == "queue":
            raise TransferTargetError(
                f"--transfer-to {self.address!r} is a Twilio queue name; a SIP caller needs a "
                "SIP URI or a number"
            )
        return self.address if self.kind == "sip" else f"tel:{self.address}"

    def with_handoff(self, handoff_id: str) -> str:
        """The SIP URI carrying the packet id as a header (RFC 3261 section 19.1.1)."""
        joiner = "&" if "?" in self.address else "?"
        return f"{self.address}{joiner}{HANDOFF_HEADER}={handoff_id}"
