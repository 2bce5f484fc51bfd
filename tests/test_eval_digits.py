"""`voicebot eval digits`: manifest checks, the digit error count, routing of digit turns,
and a real run (espeak-ng caller, mu-law line, tiny.en in a real call session)."""

import json

import numpy as np
import pytest

from tests.fakes import ScriptedASR, tone
from voicebot.asr import DigitTurnsASR
from voicebot.asr.base import ASRContext
from voicebot.cli import main
from voicebot.errors import EvalInputError
from voicebot.eval.compare import compare
from voicebot.eval.digits import KINDS, DigitOptions, _Counted, _digit_errors, evaluate_digits
from voicebot.events import Expectation


def write_manifest(tmp_path, lines: list[dict | str]):
    path = tmp_path / "digits.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_digit_errors_count_edits_and_an_unread_answer_misses_every_digit():
    assert _digit_errors("94107", "94107") == 0
    assert _digit_errors("94107", "9417") == 1  # a digit lost
    assert _digit_errors("10001", "1001") == 1  # "one oh oh oh one" as "1001"
    assert _digit_errors("4567", "4568") == 1
    assert _digit_errors("94107", "") == 5


def test_digit_turns_go_to_the_digit_recognizer_and_compute_is_counted():
    main_asr, digit_asr = ScriptedASR(["main"], 0.01), ScriptedASR(["digits"], 0.01)
    routed = _Counted(DigitTurnsASR(main_asr, digit_asr))  # the product's router (--digits-asr)
    audio = tone(0, 0.5)
    assert routed.transcribe(audio, ASRContext(KINDS["zip"][1])).text == "digits"
    assert routed.transcribe(audio, ASRContext(KINDS["phone"][1])).text == "digits"
    assert routed.transcribe(audio, ASRContext(Expectation())).text == "main"
    assert routed.transcribe(audio).text == "main"
    assert len(main_asr.calls) == 2 and len(digit_asr.calls) == 2
    assert routed.name == "scripted+scripted"
    assert routed.compute_s == pytest.approx(4 * 0.01)  # each recognition's own compute


def test_a_manifest_without_a_usable_line_and_unknown_voices_are_errors(tmp_path):
    bad = write_manifest(
        tmp_path,
        [
            {"kind": "pin", "digits": "1234", "say": "one two three four"},
            {"kind": "zip", "digits": "9410", "say": "nine four one oh"},
            {"kind": "zip", "digits": "94I07", "say": "nine four one oh seven"},
            {"kind": "last_four", "digits": "4567"},
            {"kind": "last_four", "digits": "4567", "say": "four five", "pause_s": 5},
        ],
    )
    with pytest.raises(EvalInputError, match="no line could be evaluated"):
        evaluate_digits(bad, tmp_path / "r.json", DigitOptions(voices=("espeak-us",)))
    with pytest.raises(EvalInputError, match="unknown voice 'robot'"):
        evaluate_digits(bad, tmp_path / "r.json", DigitOptions(voices=("robot",)))


@pytest.mark.e2e
def test_eval_digits_through_a_real_call(tmp_path, capsys):
    """Two answers a caller reads, by espeak-ng over a mu-law line, heard by tiny.en with
    the digit question's context; bad lines are issues naming file:line, not fatal."""
    manifest = write_manifest(
        tmp_path,
        [
            {"kind": "zip", "digits": "94107", "say": "nine four one oh seven"},
            {"kind": "pin", "digits": "1234", "say": "one two three four"},
            {"kind": "last_four", "digits": "4567", "say": "four five | six seven"},
            {"kind": "zip", "digits": "941", "say": "nine four one"},
        ],
    )
    report_path = tmp_path / "digits.json"
    args = ["--manifest", str(manifest), "--report", str(report_path), "--voices", "espeak-us"]
    status = main(["eval", "digits", *args])
    assert status == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["n"] == 2 and report["failures"] == 2
    assert any(i.startswith(f"{manifest}:2: unknown kind 'pin'") for i in report["issues"])
    assert any(i.startswith(f"{manifest}:4: a zip has 5 digits, not 3") for i in report["issues"])
    zip_code, last_four = report["items"]
    # espeak-ng's "nine four one oh seven", under the digit prompt: "9 4 1 0 7".
    assert zip_code["passed"] and zip_code["digit_errors"] == 0
    assert zip_code["turns"] == 1 and zip_code["compute_s"] > 0
    assert last_four["voice"] == "espeak-us" and last_four["family"] == "espeak"
    passed = [i["passed"] for i in report["items"]]
    assert report["exact_match"] == pytest.approx(np.mean(passed))
    unsized = [i["passed_without_length"] for i in report["items"]]
    assert report["exact_match_without_length"] == pytest.approx(np.mean(unsized))
    assert set(report["by_kind"]) == {"zip", "last_four"}
    assert report["by_voice"]["espeak-us"]["n"] == 2 and report["biased"]
    assert "2 answers: exact match" in out
    assert report_path.with_suffix(".md").read_text().startswith("# Digit eval: tiny.en")
    # A report `compare` knows: its headline metrics, each unchanged against itself.
    suite, changes = compare(report, report)
    assert suite == "digits"
    assert {c.metric for c in changes} >= {"exact_match", "digit_error_rate", "rtf"}
    assert all(c.verdict == "unchanged" for c in changes)
