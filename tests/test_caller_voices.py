"""Caller voices: one real render per engine family (the Debian binaries themselves), tempo and
pitch that really change, recognition by the real tiny.en model, the render cache, and the
error a missing engine gives."""

import numpy as np
import pytest

from voicebot.audio.frames import SAMPLE_RATE
from voicebot.errors import CallerAudioError
from voicebot.eval.normalize import normalize
from voicebot.tts.caller_voice import (
    CALLER_VOICES,
    FAMILIES,
    CallerRenderer,
    CallerVoice,
    render_caller,
    speak,
)


def test_the_registry_has_six_families_of_several_voices():
    assert list(FAMILIES) == ["piper", "espeak", "mbrola", "flite", "festival", "pico"]
    assert all(len(voices) >= 2 for voices in FAMILIES.values())
    # Tempo and pitch vary within every family.
    for family, voices in FAMILIES.items():
        assert len({CALLER_VOICES[v].tempo for v in voices}) >= 2, family
        assert len({CALLER_VOICES[v].pitch for v in voices}) >= 2, family


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "piper"])
def test_every_engine_renders_speech(family):
    audio = speak("nine four one zero seven", FAMILIES[family][0])
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / SAMPLE_RATE
    assert 0.8 < seconds < 4.0  # five words, the engines' own silences trimmed
    assert np.max(np.abs(audio)) == pytest.approx(0.9, abs=0.01)  # brought to one level
    packets = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    loud = np.sqrt(np.mean(packets**2, axis=1)) > 0.02
    assert loud.mean() > 0.4  # mostly speech, not silence
    assert not loud[0] and not loud[-1]  # 50 ms kept before and after the words


def f0(audio: np.ndarray) -> float:
    """Median pitch (Hz) over the voiced 40 ms frames, by autocorrelation."""
    estimates = []
    for start in range(0, len(audio) - 640, 320):
        frame = audio[start : start + 640] - np.mean(audio[start : start + 640])
        if np.sqrt(np.mean(frame**2)) < 0.05:
            continue
        corr = np.correlate(frame, frame, "full")[639:]
        lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 60
        lag = lo + int(np.argmax(corr[lo:hi]))
        if corr[lag] > 0.5 * corr[0]:
            estimates.append(SAMPLE_RATE / lag)
    return float(np.median(estimates))


@pytest.mark.parametrize(("family", "voice"), [("espeak", "en-us"), ("flite", "kal16")])
def test_tempo_changes_the_length_and_pitch_the_voice(family, voice):
    package = "flite" if family == "flite" else "espeak-ng"
    text = "I would like to check the balance of my account please"

    def render(tempo: float, pitch: float) -> np.ndarray:
        return speak(text, CallerVoice("probe", family, voice, package, tempo, pitch))

    plain, fast, high = render(1.0, 1.0), render(1.3, 1.0), render(1.0, 1.25)
    assert len(fast) / len(plain) == pytest.approx(1 / 1.3, rel=0.15)
    assert len(high) / len(plain) == pytest.approx(1.0, rel=0.15)  # pitch alone keeps tempo
    assert f0(high) / f0(plain) > 1.12


@pytest.fixture(scope="module")
def recognizer(bot):
    return bot.asr


@pytest.mark.e2e
@pytest.mark.parametrize("family", list(FAMILIES))
def test_tiny_en_understands_every_family_over_a_phone_line(family, recognizer, tts):
    heard = {}
    for voice in FAMILIES[family]:
        audio = render_caller("yes please", voice=voice, line="mulaw", piper=tts)
        heard[voice] = normalize(recognizer.transcribe(audio).text)
        if heard[voice] == "yes please":
            break
    assert "yes please" in heard.values(), heard


def test_renders_are_cached_on_disk_and_identical(tmp_path):
    from voicebot.audio.telephone import line

    renderer = CallerRenderer(tmp_path)
    first = renderer.render("one two three four", "espeak-scotland", line("alaw+hum-20"), seed=3)
    again = CallerRenderer(tmp_path).render(
        "one two three four", "espeak-scotland", line("alaw+hum-20"), seed=3
    )
    assert np.array_equal(first, again) and renderer.misses == 1
    assert len(list(tmp_path.glob("*.flac"))) == 1 and not list(tmp_path.glob("*partial*"))
    renderer.render("one two three four", "espeak-scotland", line("alaw"), seed=3)
    assert renderer.misses == 2 and len(list(tmp_path.glob("*.flac"))) == 2


def test_a_missing_engine_names_its_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no speech engine on this PATH
    with pytest.raises(CallerAudioError, match=r"flite is not installed: apt-get install flite"):
        speak("hello", "flite-awb")
    with pytest.raises(CallerAudioError, match=r"apt-get install espeak-ng mbrola mbrola-us2"):
        speak("hello", "mbrola-us2")


def test_a_missing_voice_of_an_installed_engine_names_its_package():
    voice = CallerVoice("probe", "festival", "nobody_diphone", "festival festvox-nobody")
    with pytest.raises(CallerAudioError, match="festvox-nobody installed"):
        speak("hello", voice)


def test_unknown_voices_list_the_registry():
    with pytest.raises(
        CallerAudioError, match="unknown caller voice 'robot'; choose one of piper-low"
    ):
        speak("hello", "robot")
