import pytest

from voicebot.asr.guards import GuardConfig, collapse_repeats, compression_ratio, drop_reason

CFG = GuardConfig()


def test_confident_speech_is_kept():
    assert drop_reason("I lost my card yesterday.", -0.2, 0.02, CFG) is None


def test_whisper_no_speech_rule():
    assert drop_reason("Hello.", -1.3, 0.8, CFG) == "no_speech"
    assert drop_reason("Hello.", -0.3, 0.8, CFG) is None  # confident words win


def test_subtitle_hallucinations_are_dropped():
    assert drop_reason("Thanks for watching!", -0.1, 0.1, CFG) == "hallucination"
    assert drop_reason("you", -0.9, 0.2, CFG) == "hallucination"
    assert drop_reason("Thank you.", -0.2, 0.05, CFG) is None  # a caller may say it


def test_repetition_loops_are_dropped():
    looped = "I'm going to go to the bank. " * 12
    assert compression_ratio(looped) > 2.4
    assert drop_reason(looped, -0.3, 0.1, CFG) == "repetition"


def test_empty():
    assert drop_reason("  ... ", -0.1, 0.1, CFG) == "empty"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I want to I want to I want to pay my bill", "I want to pay my bill"),
        ("yes yes yes yes", "yes"),
        ("no no", "no no"),
        ("check my balance", "check my balance"),
    ],
)
def test_collapse_repeats(text, expected):
    assert collapse_repeats(text) == expected
