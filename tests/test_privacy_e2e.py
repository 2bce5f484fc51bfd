"""Real calls (Whisper, the intent classifier, Piper, SQLite, a webhook receiver): a caller
reads a full card number and a ZIP code, and neither is anywhere afterwards: not in the
database file, the data folder, the webhook body, nor what Whisper hears in the recording."""

import asyncio
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import silence
from voicebot.audio.io import write_wav_atomic
from voicebot.dialog.pack import load_pack
from voicebot.handoff.webhooks import WebhookDispatcher
from voicebot.pipeline.record import JsonFileSink
from voicebot.store import Store, StoreWriter
from voicebot.transports.simulated import CallerSegment, SimulatedCaller

pytestmark = pytest.mark.e2e

CARD = "4539148803721942"  # passes Luhn
SPOKEN_CARD = "four five three nine, one four eight eight, oh three seven two, one nine four two"
ZIP_SAID = "nine four one zero seven"


def digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


# A number as it would be written down: digits with single spaces, dashes or commas between
# them, not the decimals of a float (a call's record is full of timings like 0.889410741297).
_NUMBER = re.compile(r"(?<![\d.])\d(?:[ ,\-]?\d)*(?!\.?\d)")


def kept(needle: str, text: str) -> bool:
    """Whether the digit string ``needle`` is written in ``text``: a card number anywhere in
    its digits; a shorter one (a ZIP) as a number of its own, since five digits turn up by
    chance in a file's other numbers."""
    if len(needle) >= 12:
        return needle in digits(text)
    return needle in {digits(number) for number in _NUMBER.findall(text)}


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 that keeps every body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def card_pack(tmp_path):
    """The bank pack, whose card-blocking flow also asks for the long card number, as a
    sensitive slot (``sensitive: true``)."""
    data = yaml.safe_load(load_pack("bank").path.read_text())
    data["flows"]["block_card"]["slots"].insert(
        0,
        {
            "name": "card_number",
            "type": "digits",
            "prompt": "Please read me the long number on the front of the card.",
            "reprompt": "Please say the long number on the front of the card.",
            "sensitive": True,
        },
    )
    path = tmp_path / "bank.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pack(path)


def test_a_card_number_and_a_zip_said_on_a_call_are_nowhere_afterwards(
    bot, caller_audio, card_pack, tmp_path
):
    data = tmp_path / "var"
    receiver = Receiver()
    store = Store(f"sqlite:///{data}/voicebot.db")
    writer = StoreWriter(store, spool_dir=data / "spool", webhooks=(receiver.url,))
    lines = [
        "hi I lost my card yesterday",
        ZIP_SAID,
        SPOKEN_CARD,
        "four five six seven",
        "yes please",
        "can I talk to a real person please",
    ]
    heard: list[str] = []
    caller = SimulatedCaller([CallerSegment(caller_audio(line)) for line in lines])
    bank, bot.pack = bot.pack, card_pack  # same intents, one more (sensitive) question
    try:
        record = asyncio.run(
            bot.run_call(
                caller,
                realtime=False,
                caller_id="+15551230001",
                sinks=[writer, JsonFileSink(data / "calls" / "call.json")],
                handoffs=writer,
                observer=lambda kind, event: heard.append(event.text) if kind == "final" else 0,
                recording=str(data / "recordings" / "call.wav"),
            )
        )
    finally:
        bot.pack = bank
    write_wav_atomic(record.recording, caller.stereo(), 16000)
    writer.flush()
    assert WebhookDispatcher(store, "secret").deliver_due() == 1
    writer.close()
    store.close()
    receiver.shutdown()

    # The call went as planned: verified, both card questions answered, handed off.
    said = [t.text for t in record.turns if t.role == "caller"]
    assert said[1] == "[verification answer]" and said[2] == "[redacted]", said
    assert record.ended_by == "handoff" and record.handoff_reason == "caller_request"
    assert "Shall I block the card ending in 4 5 6 7?" in [t.text for t in record.turns]
    reasons = [m["reason"] for m in record.muted]
    assert "verification" in reasons and "card_number" in reasons
    # What the dialog heard (in clear, in memory only), to look for it everywhere.
    zip_heard, card_heard = digits(heard[1]), digits(heard[2])
    assert zip_heard == "94107" and len(card_heard) >= 12, heard
    needles = [CARD, card_heard, zip_heard, "four five three nine", "nine four one zero"]

    body = receiver.bodies[0].decode()
    assert '"reason": "caller_request"' in body
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {"voicebot.db", "call.json", "call.wav"} <= {p.name for p in files}
    for place, content in [("webhook body", body)] + [(str(p), p.read_bytes()) for p in files]:
        text = content if isinstance(content, str) else content.decode("latin-1")
        for needle in needles:
            found = kept(needle, text) if needle.isdigit() else needle in text
            assert not found, (place, needle)

    # The recording kept the call, not the answers: Whisper hears neither in it.
    audio, rate = sf.read(record.recording, dtype="float32")
    assert rate == 16000 and np.abs(audio[:, 1]).max() > 0.1  # the bot is there
    recognized = bot.asr.transcribe(np.ascontiguousarray(audio[:, 0])).text
    # The caller too, where allowed (tiny.en hears "card" or "car" in the whole recording).
    assert "lost my car" in recognized.lower()
    for needle in (CARD, card_heard, zip_heard):
        assert needle[:6] not in digits(recognized), recognized


def test_voicebot_call_leaves_no_card_number_in_any_file(caller_audio, tmp_path):
    """The issue's check: `voicebot call` on a caller reading a card number and a ZIP."""
    spoken = [
        "hi I lost my card yesterday",
        ZIP_SAID,
        f"my card number is {SPOKEN_CARD}",
    ]
    audio = np.concatenate([np.concatenate([caller_audio(s), silence(6.0)]) for s in spoken])
    wav = tmp_path / "caller.wav"
    sf.write(wav, audio, 16000)
    env = os.environ | {"VOICEBOT_DB_URL": "sqlite:///var/voicebot.db"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebot",
            "call",
            str(wav),
            "--caller-id",
            "+15551230001",
            "--out",
            "bot.wav",
            "--transcript",
            "call.json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "[verification answer]" in done.stdout  # the printed transcript is masked too
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file() and p != wav]
    assert {"voicebot.db", "call.json", "bot.wav"} <= {p.name for p in files}
    for path in files:
        content = path.read_bytes().decode("latin-1")
        assert not kept(CARD, content) and "4539 1488" not in content, path
        assert not kept("94107", content), path
    assert not kept(CARD, done.stdout) and not kept("94107", done.stdout)
    for path in files:
        assert os.stat(path).st_mode & 0o077 == 0, path  # owner-only


def test_a_caller_who_declines_recording_is_not_recorded(bot, caller_audio, tmp_path):
    data = yaml.safe_load(load_pack("bank").path.read_text())
    data["privacy"]["consent"]["opt_in"] = "Do you agree? Please say yes or no."
    path = tmp_path / "bank.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines = ["no thanks", "what are your opening hours"]
    caller = SimulatedCaller([CallerSegment(caller_audio(line)) for line in lines])
    bank, bot.pack = bot.pack, load_pack(path)
    try:
        record = asyncio.run(
            bot.run_call(caller, realtime=False, recording=str(tmp_path / "call.wav"))
        )
    finally:
        bot.pack = bank
    assert record.consent["state"] == "declined" and record.recording is None
    bot_said = [t.text for t in record.turns if t.role == "bot"]
    assert bot_said[0].endswith("Do you agree? Please say yes or no.")
    assert bot_said[1].startswith("Okay, this call will not be recorded.")
    assert record.muted == [{"start": 0.0, "end": record.duration_s, "reason": "consent"}]
    assert not caller.stereo().any()  # the recording would be silence throughout


def test_verification_locks_across_calls_and_hands_off(bot, caller_audio):
    from voicebot.privacy.lockout import VerificationLockout

    def call(lines):
        caller = SimulatedCaller([CallerSegment(caller_audio(line)) for line in lines])
        return asyncio.run(bot.run_call(caller, realtime=False, caller_id="+15551230001"))

    kept, bot.lockout = bot.lockout, VerificationLockout(max_failures=3)
    try:
        first = call(["hi I lost my card", "one two three four five", "five four three two one"])
        # A wrong ZIP (tiny.en reads "one one one one one" as seven digits: a wrong length is
        # asked again and does not count, so the second call repeats a five-digit one).
        second = call(["hi I lost my card", "five four three two one"])
        third = call(["hi I lost my card"])
    finally:
        bot.lockout = kept
    assert first.handoff_reason == "repeated_failure"  # two tries in one call, as before
    assert second.handoff_reason == "verification_locked"  # the third failure today
    assert third.handoff_reason == "verification_locked"  # not asked again
    asked = [t.text for t in third.turns if t.role == "bot"]
    assert bot.pack.verification.prompt not in " ".join(asked)
