"""`voicebot eval turns` on real recordings through webrtcvad and tiny.en: a pause inside a
sentence, card digits read in two breaths, a backchannel over the bot; and bad lines."""

import json
from pathlib import Path

import pytest

from voicebot.cli import main

ROOT = Path(__file__).resolve().parents[1]
TURNS = ROOT / "eval" / "turns"

pytestmark = pytest.mark.e2e


def test_the_turn_eval_scores_both_policies_and_barge_in(tmp_path):
    lines = [
        # Real read speech with 1.1 s of silence inserted after "he was not an":
        # the fixed 500 ms timeout must end the turn inside the sentence.
        {"audio": str(ROOT / "eval/asr/audio/ps-librivox-0880.flac"), "kind": "pause",
         "expects": "request", "pauses": [[0.9, 1.1]]},
        # "four four" + 1.1 s + "five seven", asked for 4 digits.
        {"audio": str(TURNS / "audio/last4-piper-low.flac"), "kind": "digits",
         "expects": "digits", "digits": 4, "pauses": [[0.834, 1.1]]},
        {"audio": str(TURNS / "audio/backchannel-okay-piper-low.flac"), "kind": "backchannel"},
        {"audio": "missing.flac", "kind": "pause"},
        {"audio": str(TURNS / "audio/last4-piper-low.flac"), "kind": "sideways"},
    ]  # fmt: skip
    manifest = tmp_path / "turns.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report_path = tmp_path / "turns.json"
    args = ["eval", "turns", "--manifest", str(manifest), "--report", str(report_path)]
    assert main([*args, "--asr-ms", "400", "--turn-model", "smart-turn-v3.2"]) == 0
    report = json.loads(report_path.read_text())
    assert report["n"] == 3 and report["failures"] == 2
    assert any("missing.flac" in issue for issue in report["issues"])
    assert any("unknown kind 'sideways'" in issue for issue in report["issues"])
    # The fixed baseline cuts the sentence at the inserted pause and the digits after two.
    assert report["baseline"]["false_cutoff_rate"] == 1.0
    assert report["baseline"]["digit_cutoffs"] == 1
    # Dialog-aware: "two of four digits" (or no verdict yet) holds the pause open.
    assert report["digit_cutoffs"] == 0 and report["nominal"]["digit_cutoffs"] == 0
    digits = next(i for i in report["items"] if i["kind"] == "digits")
    assert digits["fixed_cut_off"] and not digits["nominal"]["cut_off"]
    # Smart Turn hears "he was not an" as unfinished: the pause waits, the sentence is one
    # turn; the digits stay the text rules' ("2 of 4 digits" is not the model's to judge).
    # Per item, the decisions under the charged 400 ms: with the measured time a busy
    # machine's late transcript gives no verdict at the pause, and the sentence waits.
    sentence = next(i for i in report["items"] if i["kind"] == "pause")["nominal"]
    assert sentence["cut_off"] and sentence["seen"] == "no rule for request"
    [at_the_pause] = sentence["model_earlier"]
    assert at_the_pause.startswith("no rule for request; sounds unfinished")
    assert not sentence["model_cut_off"] and report["with_turn_model"]["digit_cutoffs"] == 0
    # The curve has both policies at every timeout, in the same units.
    for policy in ("fixed", "dialog_aware"):
        assert [p["silence_timeout_ms"] for p in report["curve"][policy]][:3] == [200, 250, 300]
    # The previous rule let any speech over the bot interrupt it; an "okay" does not now.
    assert report["barge_in"]["before"]["false_barge_in_rate"] == 1.0
    okay = next(i for i in report["items"] if i["kind"] == "backchannel")
    assert okay["before_interrupted"]
    assert okay["interrupted"] == (okay["heard"].strip(" .!").lower() not in ("okay", "ok"))
    markdown = report_path.with_suffix(".md").read_text()
    assert "fixed 500 ms (baseline)" in markdown and "turns.curve.png" in markdown
    assert (tmp_path / "turns.curve.png").stat().st_size > 1000
