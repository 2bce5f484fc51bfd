"""The `voicebot` command as a user runs it: a real process, real files, real models."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import silence
from voicebot.audio.resample import resample


def voicebot(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "voicebot", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.e2e
def test_multi_turn_recording_gives_multiple_turns(tmp_path, caller_audio):
    audio = np.concatenate(
        [
            caller_audio("what is my account balance"),
            silence(8.0),
            caller_audio("thank you goodbye"),
            silence(1.0),
        ]
    )
    wav = tmp_path / "caller44k.wav"
    # A 44.1 kHz stereo file: resampled and mixed down on the way in.
    audio = resample(audio, 16000, 44100)
    sf.write(wav, np.stack([audio, audio], axis=1), 44100)
    out, transcript = tmp_path / "out" / "bot.wav", tmp_path / "out" / "call.json"
    result = voicebot("call", wav, "--out", out, "--transcript", transcript)
    assert result.returncode == 0, result.stderr
    record = json.loads(transcript.read_text())
    caller = [t for t in record["turns"] if t["role"] == "caller"]
    assert [t["intent"] for t in caller] == ["check_balance", "goodbye"]
    assert record["ended_by"] == "bot"
    assert all(t["timings"]["voice_to_voice_ms"] > 0 for t in caller)
    info = sf.info(out)
    assert info.channels == 2 and info.samplerate == 16000
    assert info.duration == pytest.approx(record["duration_s"], abs=0.1)
    assert "CALLER  " in result.stdout and "BOT     " in result.stdout
    assert not list(out.parent.glob(".*.tmp"))


def test_unreadable_file_fails_cleanly_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not really a wav file")
    out = tmp_path / "out"
    result = voicebot("call", bad, "--out", out / "bot.wav", "--transcript", out / "call.json")
    assert result.returncode == 2
    assert result.stderr.startswith("voicebot: error: ") and "Traceback" not in result.stderr
    assert str(bad) in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("where", ["directory", "under_a_file"])
def test_unwritable_output_fails_before_the_call(tmp_path, where):
    path = tmp_path / "s.wav"
    sf.write(path, silence(1.0), 16000)
    (tmp_path / "file").write_text("x")
    out = tmp_path if where == "directory" else tmp_path / "file" / "bot.wav"
    result = voicebot("call", path, "--out", out, "--transcript", tmp_path / "call.json")
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.startswith(f"voicebot: error: {out}: ") and "Traceback" not in result.stderr
    )
    assert not (tmp_path / "call.json").exists()  # failed before the call began


def test_missing_file(tmp_path):
    result = voicebot("call", tmp_path / "nope.wav")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_thirty_minute_file_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 1800, np.int16), 8000)
    result = voicebot("call", path)
    assert result.returncode == 2
    assert "30:00 of audio is longer than the 15:00" in result.stderr
    assert "--max-call-seconds" in result.stderr


def test_unknown_pack_is_a_clear_error(tmp_path):
    path = tmp_path / "s.wav"
    sf.write(path, silence(1.0), 16000)
    result = voicebot("call", path, "--pack", "nope")
    assert result.returncode == 2 and "unknown pack 'nope'" in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silence_or_noise_is_reprompted_then_ended_politely(tmp_path, kind):
    rng = np.random.default_rng(1)
    audio = silence(4.0) if kind == "silence" else rng.normal(0, 0.1, 64000).astype(np.float32)
    path = tmp_path / f"{kind}.wav"
    sf.write(path, audio, 8000)  # an 8 kHz telephone recording
    transcript = tmp_path / "call.json"
    result = voicebot("call", path, "--transcript", transcript)
    assert result.returncode == 0, result.stderr
    record = json.loads(transcript.read_text())
    assert record["ended_by"] == "bot"
    assert [t["kind"] for t in record["turns"] if t["role"] == "bot"][-2:] == [
        "reprompt",
        "reprompt",
    ]
    answered = [t for t in record["turns"] if t["role"] == "caller" and not t["dropped"]]
    assert answered == []
