"""PII redaction, consent, private files and the verification lockout, unit by unit.

The same through real calls (real models, a real database, a real webhook receiver) is in
test_privacy_e2e.py; the measured recall and precision come from `voicebot eval pii`.
"""

import logging
import os
import stat

import numpy as np
import pytest

from tests.fakes import EchoDialog
from voicebot.audio.io import write_text_atomic
from voicebot.audio.recorder import StereoRecorder
from voicebot.dialog.pack import load_pack
from voicebot.errors import PackError
from voicebot.events import CallerTurn, ConsentState, Expect, Expectation, Reply, Transcript
from voicebot.pipeline.record import CallRecord, Turn
from voicebot.privacy.call import CallPrivacy, ConsentDialog
from voicebot.privacy.config import ConsentConfig
from voicebot.privacy.lockout import VerificationLockout
from voicebot.privacy.redact import (
    FAILED,
    CallRedactor,
    install_log_redaction,
    redact,
    redact_json,
)
from voicebot.store import Store
from voicebot.store.schema import metadata
from voicebot.store.spool import Spool

VERIFY = Expectation(Expect.DIGITS, slot="verification", sensitive=True)


@pytest.mark.parametrize(
    ("said", "masked"),
    [
        ("My card number is 4111 1111 1111 1111.", "My card number is [card ending 1111]."),
        ("4111-1111-1111-1111", "[card ending 1111]"),
        ("four one one one, one one one one, one one one one, one one one one", None),
        ("forty one eleven eleven eleven eleven eleven eleven eleven", "[card ending 1111]"),
        (
            "it's four five three nine double one four eight, oh three seven two one nine "
            "four seven",
            None,
        ),
        ("The security code is 123.", "The security code is [security code]."),
        ("my pin is four four seven one", "my pin is [security code]"),
        ("My zip code is 94107.", "My zip code is [verification answer]."),
        ("I was born on March 3rd, 1985.", "I was born on [date of birth]."),
        ("My social is 536-22-1234.", "My social is [SSN]."),
        ("Social security number five three six two two one two three four.", None),
        ("My email is john.doe@example.com", "My email is [email]"),
        ("It's john dot doe at gmail dot com.", "It's [email]."),
        ("Call me back at 415-555-2671.", "Call me back at [phone number]."),
        ("My number is five five five one two three zero zero zero one.", None),
        ("+44 20 7946 0958", "[phone number]"),
        ("My account number is 12345678.", "My account number is [account ending 5678]."),
        ("Passport number X1234567.", "Passport number [ID number]."),
        ("the reference is 7 3 1 9 4 2 8", "the reference is [number]"),
    ],
)
def test_spoken_and_written_pii_is_masked(said, masked):
    out = redact(said).text
    assert out == masked if masked else out != said
    digits = "".join(c for c in said if c.isdigit())
    if len(digits) > 4:
        assert digits not in "".join(c for c in out if c.isdigit())


@pytest.mark.parametrize(
    "said",
    [
        "I lost my card yesterday.",
        "Block the card ending in 4567.",
        "The last four are 4 5 6 7.",
        "it's the one ending in one two three four",
        "I want to pay two hundred and fifty dollars.",
        "I'd like to transfer $1,200 to savings.",
        "Can I pay it on the 15th?",
        "I need it by 2026-03-15.",
        "It happened at 10 30 in the morning.",
        "I've been a customer since twenty fifteen.",
        "my rent is twelve hundred a month",
        "I need a new pin",
        "my zip code changed last month",
        "what's the phone number for the branch",
        "a million dollars",
    ],
)
def test_what_an_agent_needs_is_kept(said):
    assert redact(said).text == said


def test_a_sensitive_answer_is_masked_whole_whatever_its_form():
    assert redact("nine four one oh seven", VERIFY).text == "[verification answer]"
    assert (
        redact("uh it's 9-4-1-0-7 I think", VERIFY).text == "uh it's [verification answer] I think"
    )
    birth = Expectation(Expect.DATE, slot="date_of_birth", sensitive=True)
    assert "eighty" not in redact("march third nineteen eighty five", birth).text
    secret = Expectation(Expect.TEXT, slot="maiden_name", sensitive=True)
    assert redact("it's Johnson", secret).text == "[redacted]"


def test_a_number_read_over_a_pause_is_masked_in_both_turns():
    redactor = CallRedactor()
    first, _ = redactor.redact("my card number is 4111")
    assert first.text == "my card number is 4111"  # four digits alone: a card's last four
    second, earlier = redactor.redact("1111 1111 1111")
    assert second.text == "[card ending 1111]"
    assert earlier is not None and earlier.text == "my card number is [card number]"


def test_digits_answering_another_question_are_not_joined():
    redactor = CallRedactor()
    redactor.redact("9 4 1 0 7", VERIFY)
    last_four, earlier = redactor.redact("4 5 6 7", Expectation(Expect.DIGITS, 4, "card_last_four"))
    assert last_four.text == "4 5 6 7" and earlier is None


def test_redaction_that_fails_stores_a_placeholder_and_logs(monkeypatch, caplog):
    record = CallRecord(pack="bank", asr_model="x", tts_voice="y")
    privacy = CallPrivacy(record)

    def broken(self, text, expects=None):
        raise RuntimeError(f"bug while reading {text}")

    monkeypatch.setattr(CallRedactor, "redact", broken)
    turn = Turn("caller", "my card is 4111 1111 1111 1111", 1.0, asr={"raw_text": "x"})
    with caplog.at_level(logging.ERROR):
        privacy.caller_turn(turn)
    assert turn.text == FAILED and turn.asr["raw_text"] == FAILED
    assert "redaction of a caller turn failed (RuntimeError)" in caplog.text
    assert "4111" not in caplog.text


def test_log_records_are_masked_whoever_writes_them(caplog):
    install_log_redaction()
    with caplog.at_level(logging.INFO):
        logging.getLogger("uvicorn.access").info("caller said %s", "4111 1111 1111 1111")
        try:
            raise ValueError("card 4111111111111111")
        except ValueError:
            logging.getLogger("x").exception("failed on call abc123def456")
    assert "4111" not in caplog.text
    assert "[card ending 1111]" in caplog.text and "abc123def456" in caplog.text


def test_structures_keep_their_identifiers():
    data = {
        "call_id": "a1234567bcde",
        "caller_id": "+15551230001",
        "started_at": "2026-12-01T10:00:00+00:00",
        "turns": [{"text": "my number is 415 555 2671", "start": 1.5}],
    }
    out = redact_json(data)
    assert out["call_id"] == data["call_id"] and out["caller_id"] == data["caller_id"]
    assert out["started_at"] == data["started_at"] and out["turns"][0]["start"] == 1.5
    assert out["turns"][0]["text"] == "my number is [phone number]"


def test_call_data_files_are_owner_only(tmp_path):
    def mode(path):
        return stat.S_IMODE(os.stat(path).st_mode)

    os.umask(0o022)
    write_text_atomic(tmp_path / "a" / "b" / "call.json", "{}")
    assert mode(tmp_path / "a" / "b" / "call.json") == 0o600
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700
    spooled = Spool(tmp_path / "spool").put("call", "c1", {"text": "hi"})
    assert mode(spooled) == 0o600 and mode(tmp_path / "spool") == 0o700
    recorder = StereoRecorder(tmp_path / "rec" / "c1.wav")
    recorder.write(np.zeros(320, np.int16), np.zeros(320, np.int16))
    recorder.close()
    assert mode(tmp_path / "rec" / "c1.wav") == 0o600
    store = Store(f"sqlite:///{tmp_path}/db/voicebot.db")
    store.save_call({"call_id": "c1", "started_at": "2026", "turns": []})
    store.close()
    assert mode(tmp_path / "db") == 0o700
    assert all(mode(p) == 0o600 for p in (tmp_path / "db").iterdir())


def test_a_recording_without_consent_is_never_created(tmp_path):
    recorder = StereoRecorder(tmp_path / "c1.wav")
    for _ in range(10):
        recorder.write(np.ones(320, np.int16), np.ones(320, np.int16), private=True)
    recorder.close()
    assert not recorder.exists and not (tmp_path / "c1.wav").exists()


def _turn(text: str) -> CallerTurn:
    return CallerTurn(text, Transcript(text, -0.1, 0.0, 1.0, 0.1), 0.0, 1.0)


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ("yes", ConsentState.GRANTED),
        ("1", ConsentState.GRANTED),
        ("no thanks", ConsentState.DECLINED),
        ("2", ConsentState.DECLINED),
        ("I lost my card", ConsentState.NO_ANSWER),
    ],
)
def test_opt_in_consent_takes_yes_no_or_the_keypad(answer, state):
    inner = EchoDialog()
    config = ConsentConfig("This call may be recorded.", opt_in="Say yes or press 1 to allow it.")
    dialog = ConsentDialog(inner, config)
    greeting = dialog.greet()
    assert greeting.consent is ConsentState.ASKED and "press 1" in greeting.text
    reply = dialog.respond(_turn(answer))
    assert reply.consent is state
    if state is ConsentState.NO_ANSWER:
        assert inner.turns == ["I lost my card"]  # the request is answered, not lost
    else:
        assert reply.text.endswith(inner.greet().text) and inner.turns == []
    assert dialog.respond(_turn("bye")).consent is None  # asked once


def test_an_opt_in_answer_nobody_could_make_out_is_no_consent():
    inner = EchoDialog()
    config = ConsentConfig("This call may be recorded.", opt_in="Say yes or press 1 to allow it.")
    dialog = ConsentDialog(inner, config)
    dialog.greet()
    unheard = CallerTurn("", Transcript("", -0.4, 0.1, 1.2, 0.1, dropped="empty"), 0.0, 1.2)
    reply = dialog.not_understood(unheard)
    assert reply.consent is ConsentState.NO_ANSWER and reply.text == "Sorry, say that again"
    assert inner.turns == ["<empty>"]  # the dialog's own ladder counts it
    assert dialog.not_understood(unheard).consent is None  # asked once


def test_consent_state_and_mute_spans_reach_the_record():
    record = CallRecord(pack="bank", asr_model="x", tts_voice="y")
    privacy = CallPrivacy(record)
    assert privacy.tick_private()  # before the greeting: nothing is recorded
    privacy.reply(
        Reply("This call may be recorded.", "greeting", consent=ConsentState.NOTIFIED), None, 0.2
    )
    assert not privacy.tick_private()
    privacy.reply(Reply("ZIP?", "question", expects=VERIFY), None, 3.0)
    assert privacy.tick_private()
    privacy.reply(Reply("Verified.", "answer"), None, 6.5)
    privacy.finish(9.0)
    assert record.consent["state"] == "notified" and record.consent["t"] == 0.2
    assert record.muted == [
        {"start": 0.0, "end": 0.2, "reason": "consent"},
        {"start": 3.0, "end": 6.5, "reason": "verification"},
    ]


def test_pack_privacy_settings_are_checked_at_load(tmp_path):
    base = "name: p\ngreeting: hi\nfallback: what?\nno_input: ['hello?']\n"
    base += "intents:\n  hi:\n    examples: [hello]\n    response: hi\n"
    path = tmp_path / "p.yaml"
    path.write_text(base + "privacy:\n  consent:\n    anouncement: x\n")
    with pytest.raises(PackError, match=r"p.yaml:10: unknown privacy.consent setting"):
        load_pack(path)
    path.write_text(base + "privacy:\n  retention_days: 0\n")
    with pytest.raises(PackError, match="retention_days must be a whole number"):
        load_pack(path)
    path.write_text(base + "privacy:\n  consent:\n    announcement: Recorded.\n    opt_in: OK?\n")
    assert load_pack(path).privacy.consent.opt_in == "OK?"


def test_a_sensitive_slot_may_not_be_read_back(tmp_path):
    text = (load_pack("bank").path).read_text()
    slot = '        reprompt: "Sorry, I need the last four digits'
    assert slot in text
    sensitive = text.replace(slot, "        sensitive: true\n" + slot, 1)
    path = tmp_path / "bank.yaml"
    path.write_text(sensitive)
    with pytest.raises(PackError, match=r"uses \{card_last_four\}"):
        load_pack(path)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def lockout_store(request, tmp_path):
    if request.param == "memory":
        yield None
        return
    url = (
        f"sqlite:///{tmp_path}/t.db"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = Store(url)
    if request.param == "postgresql":
        metadata.drop_all(store.engine)
        metadata.create_all(store.engine)
    yield store
    store.close()


def test_verification_locks_per_caller_after_n_failures_a_day(lockout_store):
    lockout = VerificationLockout(lockout_store, max_failures=3)
    assert not lockout.failed("+15550001111", "c1")
    assert not lockout.failed("+15550001111", "c1")
    assert not lockout.locked("+15550001111", "c1")
    assert lockout.failed("+15550001111", None)  # the third, in another call
    assert lockout.locked("+15550001111", "c9")  # the same caller ID, whoever they claim
    assert lockout.locked(None, "c1") is False  # customer c1 failed twice only
    assert not lockout.locked("+15550002222", "c2")
    if lockout_store is not None:  # the table holds no phone number
        with lockout_store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT subject FROM verification_failures").all()
        assert rows and not any("555" in r[0] for r in rows)


def test_the_pii_eval_scores_misses_false_masks_and_bad_lines(tmp_path):
    import json

    from voicebot.eval.pii import evaluate_pii

    manifest = tmp_path / "m.jsonl"
    lines = [
        {
            "text": "my card is 4111 1111 1111 1111",
            "pii": [{"type": "card", "text": "4111 1111 1111 1111"}],
        },
        {"text": "the code is uh never mind", "pii": [{"type": "security_code", "text": "never"}]},
        {"text": "the reference is 7 3 1 9 4 2 8", "pii": []},
        {"text": "block the card ending in 4567", "pii": []},
        {"text": "x", "pii": [{"type": "card", "text": "not there"}]},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines))
    report = evaluate_pii(manifest, tmp_path / "r.json")
    assert report["recall"] == {"card": 1.0, "security_code": 0.0}
    assert report["precision"] == 0.5 and report["clean_untouched"] == 0.5
    assert report["failures"] == 1 and not report["meets_targets"]
    written = (tmp_path / "r.json").read_text()
    assert "4111" not in written  # reports keep masked text only


def test_redaction_meets_the_issue_targets_on_whisper_output(tmp_path):
    from pathlib import Path

    from voicebot.eval.pii import TARGETS, evaluate_pii

    report = evaluate_pii(Path("eval/pii/spoken.jsonl"), tmp_path / "r.json")
    assert report["failures"] == 0 and report["n"] >= 200 and report["clean_n"] >= 40
    for kind in ("card", "security_code", "ssn", "phone"):
        assert report["recall"][kind] >= TARGETS[kind], kind
    assert report["precision"] >= TARGETS["precision"] and report["clean_untouched"] == 1.0


def test_the_tick_that_ends_a_muted_call_stays_out_of_the_recording():
    """The session sends the tick that finished the call after ``finish``: it belongs to the
    span that was in force (a declined caller's last words, a card number's tail)."""
    record = CallRecord(pack="bank", asr_model="x", tts_voice="y")
    privacy = CallPrivacy(record)
    privacy.reply(Reply("Goodbye.", "answer", consent=ConsentState.DECLINED), None, 0.2)
    privacy.finish(4.0)
    assert privacy.tick_private()
    assert record.muted == [{"start": 0.0, "end": 4.0, "reason": "consent"}]
    assert record.recording is None
