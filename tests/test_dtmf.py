"""Keypad tones in the caller's audio: every key through a phone line, and real speech never."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import keypad_tones
from voicebot.audio.dtmf import DtmfDetector, frame_key
from voicebot.audio.frames import FRAME_SAMPLES, iter_frames
from voicebot.audio.io import load_audio
from voicebot.audio.pcm import float_to_pcm16
from voicebot.audio.telephone import telephone_channel

EVAL_ASR = Path(__file__).resolve().parents[1] / "eval" / "asr"


def detect(audio: np.ndarray) -> str:
    detector = DtmfDetector()
    return "".join(k for f in iter_frames(float_to_pcm16(audio)) if (k := detector.push(f)))


@pytest.mark.parametrize("codec", ["mulaw", "alaw", "none"])
def test_every_key_is_heard_once_through_a_phone_line(codec):
    keys = "0123456789*#"
    assert detect(telephone_channel(keypad_tones(keys), codec=codec)) == keys


def test_a_held_key_is_one_press_and_a_repeated_key_is_two():
    assert detect(keypad_tones("5", press_s=0.6)) == "5"
    assert detect(keypad_tones("55")) == "55"


def test_a_tone_too_short_to_be_a_key_press_is_not_one():
    assert detect(keypad_tones("7", press_s=0.025)) == ""


def test_noisy_line_still_carries_the_keys():
    line = telephone_channel(keypad_tones("8812"), codec="mulaw", snr_db=15.0)
    assert detect(line) == "8812"


def test_real_speech_is_never_a_key():
    """Every recording of the ASR suite (read, spontaneous, whispered, falsetto speech)."""
    manifest = EVAL_ASR / "speech-phone.jsonl"
    heard, frames = [], 0
    for line in manifest.read_text().splitlines():
        audio = load_audio(EVAL_ASR / json.loads(line)["audio"])
        frames += len(audio) // FRAME_SAMPLES
        heard.append(detect(audio))
    assert frames > 4500  # over 90 s of speech
    assert heard == [""] * len(heard)


def test_silence_and_a_single_tone_are_not_keys():
    assert frame_key(np.zeros(FRAME_SAMPLES, np.int16)) is None
    t = np.arange(FRAME_SAMPLES) / 16000
    assert frame_key(float_to_pcm16(0.5 * np.sin(2 * np.pi * 697 * t))) is None  # low tone only
