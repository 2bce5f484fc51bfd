import numpy as np
import pytest

from voicebot.events import SpeechEnded, SpeechPaused, SpeechStarted
from voicebot.vad import make_vad
from voicebot.vad.endpointer import Endpointer, EndpointerConfig


def feed(endpointer, pattern):
    """pattern: string of '1' (speech) / '0' (silence) frames; returns (frame index, event)."""
    events = []
    for i, c in enumerate(pattern):
        event = endpointer.push(i * 0.02, 1.0 if c == "1" else 0.0)
        if event is not None:
            events.append((i, event))
    return events


def test_turn_start_pause_and_end():
    events = feed(Endpointer(), "0" * 10 + "1" * 50 + "0" * 40)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechEnded]
    (i0, start), (_, pause), (i2, end) = events
    assert start.t == pytest.approx(0.2)  # first voiced frame, not when it was confirmed
    assert i0 == 14  # confirmed after 100 ms of speech
    assert pause.end == pytest.approx(1.2)
    assert i2 - 60 == 24  # 25 silent frames = 500 ms
    assert end.start == pytest.approx(0.2) and end.end == pytest.approx(1.2)
    assert end.voiced_s == pytest.approx(1.0)


def test_short_gaps_do_not_end_the_turn():
    pattern = "1" * 20 + "0" * 20 + "1" * 20 + "0" * 40
    events = feed(Endpointer(), pattern)
    ends = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert len(ends) == 1
    assert ends[0].voiced_s == pytest.approx(0.8)
    # A pause event for each gap: the speculative final is redone after the caller resumes.
    assert sum(isinstance(e, SpeechPaused) for _, e in events) == 2


def test_clicks_do_not_start_a_turn():
    assert feed(Endpointer(), "0101100110" * 10) == []


def test_silence_timeout_is_configurable():
    endpointer = Endpointer(EndpointerConfig(silence_timeout_ms=1000))
    events = feed(endpointer, "1" * 20 + "0" * 49)  # 980 ms of silence
    assert not any(isinstance(e, SpeechEnded) for _, e in events)
    assert isinstance(endpointer.push(69 * 0.02, 0.0), SpeechEnded)


def test_noise_turns_are_flagged():
    endpointer = Endpointer()
    events = feed(endpointer, "1" * 8 + "0" * 40)
    end = events[-1][1]
    assert endpointer.is_noise(end)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="eager_ms"):
        EndpointerConfig(eager_ms=700, silence_timeout_ms=600)
    with pytest.raises(ValueError, match="max_turn_ms"):
        EndpointerConfig(max_turn_ms=100)


def test_speech_without_a_pause_is_cut_at_the_maximum_turn_length():
    endpointer = Endpointer(EndpointerConfig(max_turn_ms=1000))
    events = feed(endpointer, "1" * 130 + "0" * 30)  # 2.6 s of speech, then silence
    ends = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert [(e.start, e.end, e.cut) for e in ends] == [
        pytest.approx((0.0, 1.0, True)),
        pytest.approx((1.0, 2.0, True)),
        pytest.approx((2.0, 2.6, False)),
    ]
    # Every voiced frame is in exactly one turn.
    assert sum(e.voiced_s for e in ends) == pytest.approx(2.6)
    assert sum(isinstance(e, SpeechStarted) for _, e in events) == 1  # the cuts go on


def test_a_pause_at_the_maximum_length_ends_the_turn_as_usual():
    endpointer = Endpointer(EndpointerConfig(max_turn_ms=1000))
    events = feed(endpointer, "1" * 45 + "0" * 40)  # the pause starts before 1 s
    ends = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert [(e.end, e.cut) for e in ends] == [(pytest.approx(0.9), False)]


@pytest.mark.parametrize("name", ["webrtc", "silero"])
def test_real_vads_tell_speech_from_silence(name, caller_audio):
    vad = make_vad(name)
    speech = caller_audio("hello I would like to check my balance please")
    pcm = (speech * 32767).astype(np.int16)
    frames = [pcm[i : i + 320] for i in range(0, len(pcm) - 320, 320)]
    probs = [vad.speech_prob(f) for f in frames]
    after = [vad.speech_prob(np.zeros(320, np.int16)) for _ in range(50)]
    fresh = make_vad(name)
    silent = [fresh.speech_prob(np.zeros(320, np.int16)) for _ in range(50)]
    assert np.mean(np.array(probs) > 0.5) > 0.5
    assert max(silent) < 0.5
    # Detectors may hold "speech" for a few frames after it stops (hangover), not 0.5 s.
    assert max(after[25:]) < 0.5


def test_unknown_vad():
    with pytest.raises(ValueError, match="unknown VAD"):
        make_vad("nope")
