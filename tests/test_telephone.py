"""Line conditions: noise at the SNR asked for, G.711 both ways, packet loss at the rate asked
for and concealed without silence or clicks, a muffled and a clipped handset."""

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.io import load_audio
from voicebot.audio.resample import resample
from voicebot.audio.telephone import (
    NARROW_RATE,
    NOISES,
    PACKET_SAMPLES,
    LineCondition,
    active_level,
    add_noise,
    conceal,
    line,
    lose_packets,
    noise_signal,
)
from voicebot.errors import CallerAudioError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Real recorded speech (LibriVox), in the line's 8 kHz band."""
    return resample(load_audio(ROOT / "eval/asr/audio/ps-librivox-0870.flac"), 16000, NARROW_RATE)


def vowel(seconds: float = 1.0, f0: float = 100.0) -> np.ndarray:
    """A steady voiced sound: a 100 Hz fundamental and a few harmonics."""
    t = np.arange(round(seconds * NARROW_RATE)) / NARROW_RATE
    parts = [(0.3, 1, 0.0), (0.2, 3, 1.0), (0.1, 7, 2.0)]
    return sum(a * np.sin(2 * np.pi * f0 * k * t + p) for a, k, p in parts).astype(np.float32)


def db(ratio: float) -> float:
    return 20 * np.log10(ratio)


@pytest.mark.parametrize("kind", NOISES)
@pytest.mark.parametrize("snr", [10.0, 15.0, 20.0])
def test_noise_is_mixed_at_the_snr_asked_for(speech, kind, snr):
    mixed = add_noise(speech, kind, snr, np.random.default_rng(3))
    noise = mixed - speech
    measured = db(active_level(speech) / np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
    assert measured == pytest.approx(snr, abs=0.05)


def test_a_line_with_noise_has_that_snr_after_the_whole_chain(speech):
    clean = LineCondition(codec="none").apply(speech, rate=NARROW_RATE, seed=1)
    noisy = line("linear+babble-12").apply(speech, rate=NARROW_RATE, seed=1)
    noise = noisy - clean
    measured = db(active_level(clean) / np.sqrt(np.mean(noise.astype(np.float64) ** 2)))
    assert measured == pytest.approx(12.0, abs=0.3)  # 16-bit quantization on both sides


def band_share(audio: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / NARROW_RATE)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def test_each_noise_sounds_like_what_it_is_named():
    rng = np.random.default_rng(0)
    n = 4 * NARROW_RATE
    hum, street, babble, white = (
        noise_signal(k, n, rng) for k in ("hum", "street", "babble", "white")
    )
    spectrum = np.abs(np.fft.rfft(hum))
    assert np.fft.rfftfreq(n, 1 / NARROW_RATE)[np.argmax(spectrum)] == pytest.approx(60, abs=1)
    assert band_share(street, 0, 700) > 0.8  # traffic rumbles
    assert band_share(white, 0, 700) < 0.25
    # Babble is speech: most energy in the voice band, and a loudness that comes and goes
    # with the talkers' syllables, unlike steady noise.
    assert band_share(babble, 100, 3000) > 0.8

    def envelope_spread(x: np.ndarray) -> float:
        packets = np.sqrt(np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1))
        return float(np.std(packets) / np.mean(packets))

    assert envelope_spread(babble) > 2 * envelope_spread(white)
    # Music: a few strong notes of the scale (most energy at the named pitches' harmonics),
    # and notes that start and die away.
    music = noise_signal("music", n, rng)
    spectrum = np.abs(np.fft.rfft(music)) ** 2
    top = np.argsort(spectrum)[::-1][:200]
    assert spectrum[top].sum() / spectrum.sum() > 0.5
    assert envelope_spread(music) > 2 * envelope_spread(white)


@pytest.mark.parametrize("share", [0.01, 0.02, 0.03])
def test_packets_are_lost_at_the_rate_asked_for(share):
    packets = 500  # ten seconds of 20 ms packets
    lost = lose_packets(packets * PACKET_SAMPLES, share, np.random.default_rng(5))
    assert len(lost) == packets and lost.sum() == round(share * packets)


def test_a_lossy_line_changes_only_around_the_lost_packets(speech):
    clean = LineCondition(codec="none").apply(speech, rate=NARROW_RATE, seed=2)
    lossy = line("linear+loss-3").apply(speech, rate=NARROW_RATE, seed=2)
    lost = lose_packets(len(speech), 0.03, np.random.default_rng(2))
    n = len(clean) // PACKET_SAMPLES * PACKET_SAMPLES
    changed = np.any((lossy[:n] != clean[:n]).reshape(-1, PACKET_SAMPLES), axis=1)
    assert changed[lost[: len(changed)]].all()
    # Beyond the lost packets, only the overlap-added edges of their neighbours differ.
    near = lost | np.roll(lost, 1) | np.roll(lost, -1)
    assert not changed[~near[: len(changed)]].any()


def test_concealment_repeats_the_voice_instead_of_silence():
    audio = vowel()
    lost = np.zeros(len(audio) // PACKET_SAMPLES, bool)
    lost[20] = True
    start = 20 * PACKET_SAMPLES
    out = conceal(audio, lost)
    gap, original = out[start : start + PACKET_SAMPLES], audio[start : start + PACKET_SAMPLES]
    # The first 10 ms continue the waveform exactly (one pitch period repeated); the rest
    # fades by 20 % per 10 ms, so the packet keeps most of its energy.
    assert np.max(np.abs(gap[:80] - original[:80])) < 1e-3
    assert active_level(gap) > 0.8 * active_level(original)
    # Continuous: no step bigger than the signal's own steepest at the edges or inside.
    steepest = np.max(np.abs(np.diff(audio)))
    assert np.max(np.abs(np.diff(out[start - 40 : start + PACKET_SAMPLES + 40]))) <= steepest * 1.05
    silent = audio.copy()
    silent[start : start + PACKET_SAMPLES] = 0  # what a receiver without concealment plays
    assert np.max(np.abs(np.diff(silent[start - 40 : start + 40]))) > 1.5 * steepest


def test_a_long_gap_fades_out_and_the_voice_fades_back_in():
    audio = vowel()
    lost = np.zeros(len(audio) // PACKET_SAMPLES, bool)
    lost[20:24] = True  # 80 ms
    start = 20 * PACKET_SAMPLES
    out = conceal(audio, lost)
    level = [active_level(out[start + i * 80 : start + i * 80 + 80]) for i in range(8)]
    assert all(a > b for a, b in pairwise(level[1:6]))  # fading
    assert level[6] == level[7] == 0.0  # silent after 60 ms
    after = out[start + 640 : start + 720]  # the voice returns through the overlap-add
    assert active_level(after) > 0.4 * active_level(audio[start + 640 : start + 720])


def test_concealment_of_real_speech_is_not_silence(speech):
    lost = np.zeros(len(speech) // PACKET_SAMPLES, bool)
    packets = speech[: len(lost) * PACKET_SAMPLES].reshape(-1, PACKET_SAMPLES)
    loudest = int(np.argmax(np.mean(packets**2, axis=1)))  # in the middle of a vowel
    lost[loudest] = True
    gap = conceal(speech, lost)[loudest * PACKET_SAMPLES : (loudest + 1) * PACKET_SAMPLES]
    assert active_level(gap) > 0.3 * active_level(packets[loudest])


@pytest.mark.parametrize("codec", ["mulaw", "alaw"])
def test_g711_round_trips_a_tone_at_telephone_quality(codec):
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(NARROW_RATE) / NARROW_RATE)
    out = LineCondition(codec=codec).apply(tone.astype(np.float32), rate=NARROW_RATE)
    error = out - tone
    assert db(np.sqrt(np.mean(tone**2)) / np.sqrt(np.mean(error**2))) > 30  # G.711: ~38 dB
    other = LineCondition(codec="alaw" if codec == "mulaw" else "mulaw").apply(
        tone.astype(np.float32), rate=NARROW_RATE
    )
    assert not np.array_equal(out, other)


def test_a_muffled_handset_loses_the_highs_and_a_clipped_one_is_flattened(speech):
    clear = LineCondition(codec="none").apply(speech, rate=NARROW_RATE)
    muffled = line("linear+muffled").apply(speech, rate=NARROW_RATE)
    assert band_share(muffled, 2000, 4000) < 0.05 * band_share(clear, 2000, 4000)
    clipped = line("linear+clipped").apply(speech, rate=NARROW_RATE)

    def crest(x: np.ndarray) -> float:
        return float(np.max(np.abs(x)) / active_level(x))

    assert crest(clipped) < 0.6 * crest(clear)
    assert np.mean(np.abs(clipped) >= 0.99 * np.max(np.abs(clipped))) > 0.01  # flat tops


def test_conditions_are_named_stages_joined_with_plus():
    assert line("alaw+babble-15+loss-2") == LineCondition(
        codec="alaw", noise="babble", snr_db=15.0, loss=0.02
    )
    assert line("mulaw") == LineCondition()
    assert line("babble-10+street-20").noise == "street"  # the later stage wins
    assert line("muffled+clipped+loss-1.5").loss == 0.015
    with pytest.raises(CallerAudioError, match="unknown line condition 'babel-15'; use mulaw"):
        line("alaw+babel-15")
    with pytest.raises(CallerAudioError, match="packet loss"):
        line("loss-60")
    with pytest.raises(CallerAudioError, match="noise and snr_db go together"):
        LineCondition(noise="hum")


def test_the_same_seed_gives_the_same_line(speech):
    condition = line("alaw+street-10+loss-2")
    first = condition.apply(speech, rate=NARROW_RATE, seed=7)
    assert np.array_equal(first, condition.apply(speech, rate=NARROW_RATE, seed=7))
    assert not np.array_equal(first, condition.apply(speech, rate=NARROW_RATE, seed=8))
