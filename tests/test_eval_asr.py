"""ASR eval: the WER normalizer, error counting, and `voicebot eval asr` on real recordings."""

import json
from pathlib import Path

import pytest

from voicebot.cli import main
from voicebot.eval.normalize import normalize
from voicebot.eval.wer import Errors, char_errors, total, word_errors

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("Nine four one zero seven.", "94107"),
        ("nine four one oh seven", "9-4-1-0-7"),
        ("two hundred and fifty dollars", "$250"),
        ("twelve hundred", "1,200"),
        ("three point one percent", "3.1%"),
        ("the twenty first", "the 21st"),
        ("ten of clubs", "10 of clubs"),
        ("Mister John Dashwood", "Mr. John Dashwood"),
        ("okay, um, I lost my card", "OK. I lost my card, uh..."),
        ("rock and roll", "Rock & Roll!"),
        ("mhm", "Uh-huh."),
    ],
)
def test_normalizer_makes_the_same_words_equal(written, spoken):
    assert normalize(written) == normalize(spoken)


def test_normalizer_output_and_what_it_keeps_apart():
    assert normalize("Hi, I'm [laughter] at <unk> ZIP 94107!") == "hi i'm at zip 9 4 1 0 7"
    assert normalize("two hundred dollars") == "2 0 0 dollars"
    assert normalize("the one I lost") == "the one i lost"  # "one" as a pronoun stays a word
    assert normalize("four five six seven") != normalize("four five six eight")
    assert normalize("um uh er") == ""


def test_word_and_character_errors():
    errors = word_errors("a b c d", "a x c d e")
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.length) == (
        1,
        0,
        1,
        4,
    )
    assert errors.rate == pytest.approx(0.5)
    assert word_errors("a b", "").rate == 1.0
    assert word_errors("", "").rate == 0.0
    assert word_errors("", "hello").rate == 1.0
    assert char_errors("abc", "abd").rate == pytest.approx(1 / 3)
    # Corpus rates sum the errors: a long utterance weighs what its words weigh.
    assert total([Errors(1, 0, 0, 10), Errors(0, 0, 0, 30)]).rate == pytest.approx(1 / 40)


@pytest.mark.e2e
def test_eval_asr_offline_and_streaming_on_real_speech(tmp_path, capsys):
    """Real recordings through the real model both ways; bad lines counted, not fatal."""
    lines = [
        json.loads(line) for line in (ROOT / "eval/asr/speech-phone.jsonl").read_text().splitlines()
    ]
    chosen = [
        dict(line, audio=str(ROOT / "eval/asr" / line["audio"]))
        for line in lines
        if Path(line["audio"]).stem in ("ps-cards-005", "ps-goforward", "mfa-mfa_thoughts")
    ]
    assert len(chosen) == 3
    unreadable = tmp_path / "unreadable.wav"
    unreadable.write_bytes(b"RIFF not really a wave file")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "\n".join(
            [json.dumps(chosen[0]), json.dumps({"audio": "missing.wav", "text": "hello"})]
            + [json.dumps(c) for c in chosen[1:]]
            + ['{"audio": "x.wav"', json.dumps({"audio": str(unreadable), "text": "hi"})]
        )
    )
    report_path = tmp_path / "asr.json"
    assert main(["eval", "asr", "--manifest", str(manifest), "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["n"] == 3 and report["failures"] == 3
    assert any(i.startswith(f"{manifest}:2: ") and "missing.wav" in i for i in report["issues"])
    assert f"{manifest}:5: invalid JSON" in out
    assert any(i.startswith(f"{manifest}:6: ") for i in report["issues"])
    offline, streaming = report["modes"]["offline"], report["modes"]["streaming"]
    # Telephone-band real speech: both ways recognize it well, and streaming stays close.
    assert offline["wer"] <= 0.15, report["items"]
    assert streaming["wer"] <= offline["wer"] + 0.1, report["items"]
    assert report["wer"] == streaming["wer"] and report["mode"] == "streaming"
    assert offline["rtf"] > 0 and streaming["rtf"] > 0  # how fast: scripts/bench_pipeline.py
    item = report["items"][0]
    assert item["source"].startswith("pocketsphinx-testdata")  # extra keys are kept
    assert item["streaming"]["normalized"] and "words" in item["offline"]
    assert report_path.with_suffix(".md").exists()
    assert (tmp_path / "asr.wer.png").exists()


def test_committed_manifests_are_what_the_script_builds(tmp_path):
    """The shipped clips are reproducible from the Debian package (provenance check)."""
    import importlib.util

    import soundfile as sf

    spec = importlib.util.spec_from_file_location(
        "build_asr_manifests", ROOT / "scripts/build_asr_manifests.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.POCKETSPHINX.is_dir(), "scripts/provision.sh installs pocketsphinx-testdata"
    script.write_manifests(script.pocketsphinx_clips(script.POCKETSPHINX), tmp_path)
    for name in ("speech.jsonl", "speech-phone.jsonl"):
        built = (tmp_path / name).read_text().splitlines()
        shipped = (ROOT / "eval/asr" / name).read_text().splitlines()
        assert len(built) == 11 and built == shipped[: len(built)]
        for row in map(json.loads, built):
            ours, theirs = (
                sf.read(tmp_path / row["audio"]),
                sf.read(ROOT / "eval/asr" / row["audio"]),
            )
            assert ours[1] == theirs[1] and (ours[0] == theirs[0]).all()


def test_eval_asr_refuses_an_empty_or_missing_manifest(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for manifest, message in (
        (empty, "the manifest is empty"),
        (tmp_path / "no.jsonl", "manifest not found"),
    ):
        argv = ["eval", "asr", "--manifest", str(manifest), "--report", str(tmp_path / "r.json")]
        assert main(argv) == 2
        assert f"{manifest}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
