"""``voicebot handoffs`` and the database flags, as operators use them (real subprocesses)."""

import json
import subprocess
import sys

from voicebot.store import Store


def voicebot(*args):
    return subprocess.run(
        [sys.executable, "-m", "voicebot", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def seed(url):
    store = Store(url)
    store.add_handoff(
        {
            "handoff_id": "abc123",
            "call_id": "call1",
            "caller_id": "+15551230001",
            "reason": "low_confidence",
            "explanation": "out of scope (2 unsure turns in a row)",
            "summary": 'Wants: unclear; first said "the thing".\nBot did: nothing yet.',
            "transcript": [
                {"role": "bot", "text": "How can I help?", "start": 0.1},
                {"role": "caller", "text": "the thing ünïcode", "start": 3.0, "intent": None},
            ],
            "recording": "build/demo/bot.wav",
        },
        webhooks=("http://127.0.0.1:9/hook",),
    )
    store.close()


def test_list_and_show(tmp_path):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    seed(url)
    listing = voicebot("handoffs", "list", "--db", url)
    assert listing.returncode == 0, listing.stderr
    assert "abc123" in listing.stdout and "low_confidence" in listing.stdout
    assert "unclear" in listing.stdout
    as_json = json.loads(voicebot("handoffs", "list", "--db", url, "--json").stdout)
    assert as_json[0]["status"] == "queued"
    show = voicebot("handoffs", "show", "abc123", "--db", url)
    assert "the thing ünïcode" in show.stdout and "recording: build/demo/bot.wav" in show.stdout
    assert "webhook http://127.0.0.1:9/hook: pending after 0 attempt(s)" in show.stdout
    assert (
        json.loads(voicebot("handoffs", "show", "abc123", "--db", url, "--json").stdout)["reason"]
        == "low_confidence"
    )
    empty = voicebot("handoffs", "list", "--db", url, "--status", "closed")
    assert empty.stdout.strip() == "no handoffs with status closed"


def test_operator_errors_are_one_clear_line(tmp_path):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    seed(url)
    missing = voicebot("handoffs", "show", "nope", "--db", url)
    assert (
        missing.returncode == 1 and missing.stderr.strip() == "voicebot: error: no handoff 'nope'"
    )
    down = voicebot("handoffs", "list", "--db", "postgresql://u:pw@127.0.0.1:1/x")
    assert down.returncode == 3 and "is the server running" in down.stderr
    assert "pw" not in down.stderr and "Traceback" not in down.stderr
    unsigned = voicebot("handoffs", "deliver", "--db", url)
    assert unsigned.returncode == 1 and "VOICEBOT_WEBHOOK_SECRET" in unsigned.stderr


def test_call_with_an_unusable_database_fails_before_loading_models():
    result = voicebot("call", "examples/lost_card_call.wav", "--db", "postgresql://u@127.0.0.1:1/x")
    assert result.returncode == 3 and "cannot open the store" in result.stderr
    bad_hook = voicebot("call", "examples/lost_card_call.wav", "--webhook", "ftp://x")
    assert bad_hook.returncode == 1 and "http:// or https://" in bad_hook.stderr
