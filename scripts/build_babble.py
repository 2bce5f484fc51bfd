"""Rebuild the babble noise of the line conditions from real recorded speech.

    .venv/bin/python scripts/build_babble.py

Babble (a busy room, a call center floor, a café) is many people talking at once. It is
built here from the repository's real recordings (``eval/asr/audio``: LibriVox, CMU Sphinx
test data, Montreal Forced Aligner test clips, Common Voice; licences in
``eval/asr/SOURCES.md``; the whispered clip and the CC BY LibriSpeech clip are left out):
each of ``TALKERS`` streams plays the clips' voiced parts in its own shuffled order, every
stream at the same level, and the sum is written to ``voicebot/audio/noise/babble.flac``
(8 kHz, the line's band). With six talkers at once no word stays intelligible, so the
recognizer hears speech-like noise, not a second caller. Deterministic (fixed seed).
"""

from pathlib import Path

import numpy as np
import soundfile as sf

from voicebot.audio.io import load_audio
from voicebot.audio.resample import resample
from voicebot.audio.telephone import NARROW_RATE, PACKET_SAMPLES, active_level

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "eval" / "asr" / "audio"
EXCLUDED = {"mfa-whisper2.flac", "mfa-61-70968-0000.flac"}
OUT = ROOT / "voicebot" / "audio" / "noise" / "babble.flac"
TALKERS = 6
SECONDS = 20.0


def voiced(audio: np.ndarray) -> np.ndarray:
    """The clip without its pauses (20 ms packets within 30 dB of the loudest one)."""
    packets = audio[: len(audio) // PACKET_SAMPLES * PACKET_SAMPLES].reshape(-1, PACKET_SAMPLES)
    power = np.mean(packets**2, axis=1)
    return packets[power > power.max() * 1e-3].reshape(-1)


def main() -> None:
    clips = []
    for path in sorted(SOURCES.glob("*.flac")):
        if path.name in EXCLUDED:
            continue
        speech = voiced(resample(load_audio(path), 16000, NARROW_RATE))
        clips.append(speech / active_level(speech))
    rng = np.random.default_rng(13)
    length = round(SECONDS * NARROW_RATE)
    babble = np.zeros(length, np.float32)
    for _ in range(TALKERS):
        order = rng.permutation(len(clips))
        stream = np.concatenate([clips[i] for i in order])
        stream = np.roll(stream, rng.integers(len(stream)))
        babble += np.resize(stream, length)
    babble *= 0.5 / np.max(np.abs(babble))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sf.write(OUT, babble, NARROW_RATE, subtype="PCM_16")
    print(f"wrote {OUT} ({SECONDS:.0f} s, {TALKERS} talkers from {len(clips)} clips)")


if __name__ == "__main__":
    main()
