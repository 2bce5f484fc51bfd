import numpy as np
import pytest

from voicebot.audio.resample import resample
from voicebot.audio.telephone import NARROW_RATE, line, noise_signal
from voicebot.events import SpeechEnded, SpeechPaused, SpeechStarted
from voicebot.vad import DEFAULT_VAD, VAD_BACKENDS, make_vad
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


@pytest.mark.parametrize("name", VAD_BACKENDS)
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


def test_our_silero_runner_gives_the_packages_own_probabilities(caller_audio):
    """SileroVAD runs the ONNX file straight on onnxruntime (7x cheaper than the package's
    torch wrapper); it must hear what the package hears."""
    import torch
    from silero_vad import load_silero_vad

    from voicebot.vad.silero import SileroVAD

    audio = caller_audio("hello I would like to check my balance please")
    ours, theirs = SileroVAD(), load_silero_vad(onnx=True)
    pcm = (audio * 32767).astype(np.int16)
    windows = [pcm[i : i + 512] for i in range(0, len(pcm) - 512, 512)]
    for window in windows:  # 512 samples: exactly one Silero window per call
        mine = ours.speech_prob(window)
        reference = theirs(torch.from_numpy(window.astype(np.float32) / 32768), 16000).item()
        assert mine == pytest.approx(reference, abs=1e-4)


@pytest.mark.parametrize("kind", ["hum", "music", "street"])
def test_the_default_detector_hears_no_speech_in_hum_music_or_traffic(kind):
    """webrtcvad hears speech in these (hum and music in every frame); the default detector,
    which times frames with webrtcvad, never vouches for them (Silero hears no speech)."""
    narrow = noise_signal(kind, 10 * NARROW_RATE, np.random.default_rng(1))
    narrow = narrow / np.sqrt(np.mean(narrow**2)) * 10 ** (-30 / 20)
    audio = line("mulaw").apply(resample(narrow.astype(np.float32), NARROW_RATE, 16000))
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    frames = [pcm[i : i + 320] for i in range(0, len(pcm) - 320, 320)]
    webrtc, default = make_vad("webrtc"), make_vad(DEFAULT_VAD)
    assert np.mean([webrtc.speech_prob(f) >= 0.5 for f in frames]) > 0.3
    vouched = []
    for frame in frames:
        default.speech_prob(frame)
        vouched.append(default.vouches)
    assert not any(vouched)


def feed_levels(endpointer, frames):
    """frames: (speech probability, level dBFS) per 20 ms frame; returns the events."""
    events = []
    for i, (prob, level) in enumerate(frames):
        event = endpointer.push(i * 0.02, prob, level)
        if event is not None:
            events.append(event)
    return events


def test_speech_at_the_level_of_the_background_opens_no_turn():
    """A TV is speech to any detector: 10 s of it at -30 dBFS opens nothing, and the
    caller at the phone, 10 dB louder, opens a turn at once."""
    endpointer = Endpointer()
    tv = [(1.0, -30.0 + (i % 7) - 3) for i in range(500)]  # within 3 dB of -30 dBFS
    assert feed_levels(endpointer, tv) == []
    assert endpointer.line.background_db == pytest.approx(-30, abs=1)
    caller = [(1.0, -20.0)] * 10
    assert isinstance(feed_levels(endpointer, caller)[0], SpeechStarted)


def test_the_callers_own_speech_does_not_raise_the_background():
    """Only frames outside turns are background: a caller who talks for 10 s, pauses and
    talks on at the same level opens a second turn."""
    endpointer = Endpointer()
    quiet = [(0.0, -60.0)] * 50
    talk = [(1.0, -22.0)] * 500
    events = feed_levels(endpointer, quiet + talk + [(0.0, -60.0)] * 40 + talk[:50])
    assert sum(isinstance(e, SpeechStarted) for e in events) == 2


def test_a_turn_opens_where_the_voiced_frames_began_once_they_are_vouched_for():
    """A second detector's opinion comes late (Silero fires ~80 ms after webrtcvad): the
    turn waits for it, then starts at the first voiced frame, not where it vouched."""
    endpointer = Endpointer()
    events = []
    for i in range(40):
        voiced, vouched = i >= 10, i >= 18
        event = endpointer.push(i * 0.02, float(voiced), None, vouched)
        if event is not None:
            events.append((i, event))
    [(index, started)] = events
    assert index == 18 and started.t == pytest.approx(0.2)


def test_frames_nobody_vouches_for_open_no_turn_and_end_one():
    endpointer = Endpointer()
    assert feed_vouched(endpointer, [(1.0, False)] * 100) == []
    events = feed_vouched(endpointer, [(1.0, True)] * 20 + [(1.0, False)] * 30)
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechEnded]


def feed_vouched(endpointer, frames):
    events = []
    for i, (prob, vouched) in enumerate(frames):
        event = endpointer.push(i * 0.02, prob, None, vouched)
        if event is not None:
            events.append(event)
    return events
