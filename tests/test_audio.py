import wave

import numpy as np
import pytest
import soundfile as sf

from voicebot.audio.frames import FRAME_SAMPLES, iter_frames
from voicebot.audio.io import load_audio, write_wav_atomic
from voicebot.audio.pcm import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode
from voicebot.audio.resample import StreamResampler, resample
from voicebot.audio.telephone import telephone_channel
from voicebot.errors import AudioInputError


def sine(rate, seconds=1.0, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_any_rate_is_resampled_once_to_16k(tmp_path, rate):
    path = tmp_path / f"a{rate}.wav"
    sf.write(path, sine(rate), rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert len(audio) == pytest.approx(16000, abs=2)
    # The tone survives at the same frequency.
    peak = np.argmax(np.abs(np.fft.rfft(audio))) * 16000 / len(audio)
    assert peak == pytest.approx(440, abs=2)


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = sine(16000), np.zeros(16000, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000)
    audio = load_audio(tmp_path / "s.wav")
    assert audio.ndim == 1
    assert np.max(np.abs(audio)) == pytest.approx(0.25, abs=0.01)


def test_flac_and_8bit_mulaw_wav_are_read(tmp_path):
    sf.write(tmp_path / "a.flac", sine(16000), 16000)
    sf.write(tmp_path / "u.wav", sine(8000), 8000, subtype="ULAW")
    assert len(load_audio(tmp_path / "a.flac")) == 16000
    assert len(load_audio(tmp_path / "u.wav")) == pytest.approx(16000, abs=2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable audio file"),
        (b"this is not audio at all" * 10, "not a readable audio file"),
    ],
)
def test_unreadable_files_give_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioInputError, match=message):
        load_audio(path)


def test_missing_file(tmp_path):
    with pytest.raises(AudioInputError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_truncated_wav_is_used_with_a_warning(tmp_path, caplog):
    path = tmp_path / "t.wav"
    sf.write(path, sine(16000, 2.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still promises 2 s
    audio = load_audio(path)
    assert len(audio) == pytest.approx(16000, abs=50)
    assert "is truncated" in caplog.text


def test_truncated_header_is_an_error(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, sine(16000, 1.0), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(AudioInputError):
        load_audio(path)


def test_header_only_wav_holds_no_audio(tmp_path):
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(AudioInputError, match=r"holds no audio|not a readable"):
        load_audio(path)


def test_too_long_is_refused_before_reading(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 40, np.int16), 8000)
    with pytest.raises(AudioInputError, match="0:40 of audio is longer than the 0:30"):
        load_audio(path, max_seconds=30)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(OSError):
        write_wav_atomic(target, np.zeros(100, np.int16), 16000)
    assert list(tmp_path.iterdir()) == []


def test_frames_are_20ms_and_padded():
    frames = list(iter_frames(np.ones(FRAME_SAMPLES * 2 + 5, np.int16)))
    assert [len(f) for f in frames] == [FRAME_SAMPLES] * 3
    assert frames[-1][5:].sum() == 0


@pytest.mark.parametrize(
    ("encode", "decode"), [(mulaw_encode, mulaw_decode), (alaw_encode, alaw_decode)]
)
def test_g711_roundtrip_is_close(encode, decode):
    pcm = (np.sin(np.linspace(0, 100, 8000)) * 20000).astype(np.int16)
    data = encode(pcm)
    assert len(data) == len(pcm)
    back = decode(data)
    assert np.corrcoef(pcm, back)[0, 1] > 0.999
    assert np.max(np.abs(back.astype(int) - pcm)) < 1100


def test_mulaw_matches_known_codes():
    # ITU G.711 reference values: 0 -> 0xFF, max positive -> 0x80, max negative -> 0x00.
    assert mulaw_encode(np.array([0, 32767, -32768], np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(np.array([0], np.int16)) == bytes([0xD5])


def test_stream_resampler_matches_whole_buffer():
    audio = (sine(8000, 1.0) * 32767).astype(np.int16)
    stream = StreamResampler(8000, 16000)
    chunks = [stream.process(audio[i : i + 160]) for i in range(0, len(audio), 160)]
    chunks.append(stream.process(np.zeros(0, np.int16), last=True))
    streamed = np.concatenate(chunks)
    whole = resample(audio, 8000, 16000)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    assert np.corrcoef(streamed[100 : n - 100], whole[100 : n - 100])[0, 1] > 0.999


def test_telephone_channel_removes_high_frequencies():
    audio = sine(16000, 1.0, freq=6000) + sine(16000, 1.0, freq=500)
    phone = telephone_channel(audio)
    spectrum = np.abs(np.fft.rfft(phone))
    freqs = np.fft.rfftfreq(len(phone), 1 / 16000)
    assert (
        spectrum[np.argmin(np.abs(freqs - 6000))] < 0.01 * spectrum[np.argmin(np.abs(freqs - 500))]
    )
