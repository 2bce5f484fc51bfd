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


@pytest.mark.parametrize(
    "text",
    [
        "1, 0, 0, 0, 1",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "one one one one, one one one one, one one one one, one one one one",
        "5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5",
        "My card number is 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1.",
    ],
)
def test_a_digit_string_is_never_dropped_or_collapsed(text):
    """A card read digit by digit compresses like a loop; it is the caller's answer."""
    assert drop_reason(text, -0.3, 0.1, CFG) is None
    assert collapse_repeats(text) == text


def test_a_loop_of_digits_is_still_a_loop():
    assert drop_reason("1, 3, " + "4, " * 100, -0.3, 0.4, CFG) == "repetition"
    assert drop_reason("the card ending in 4.5" + ".5" * 90, -0.2, 0.2, CFG) == "repetition"


@pytest.mark.parametrize("text", ["你好，谢谢。", "Привет, как дела?", "ありがとう"])
def test_another_script_is_not_an_english_caller(text):
    assert drop_reason(text, -0.3, 0.1, CFG) == "other_script"


def test_a_copy_of_the_prompt_is_not_the_caller():
    prompt = "Northwind Bank, checking account, savings account, debit card."
    assert drop_reason("Northwind Bank, checking account.", -0.2, 0.3, CFG, prompt) == "prompt_echo"
    assert drop_reason("Checking account.", -0.2, 0.3, CFG, prompt) is None  # a real answer
    digits = "0 1 2 3 4 5 6 7 8 9."
    assert drop_reason("0 1 2 3 4 5 6 7 8 9", -0.2, 0.3, CFG, digits) == "prompt_echo"
    assert drop_reason("1 2 3 4", -0.2, 0.3, CFG, digits) is None  # a card's last four
    assert drop_reason("Northwind Bank, checking account.", -0.2, 0.3, CFG) is None


def test_a_prompted_decode_of_noise_is_no_speech_however_confident():
    """tiny.en on 1.5 s of white noise through mu-law, under the digit prompt."""
    noise = "1 2 3 4 5 7 8 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9"
    assert drop_reason(noise, -0.78, 0.87, CFG, "0 1 2 3 4 5 6 7 8 9.") == "no_speech"
    assert drop_reason("9 4 1 0 7", -0.3, 0.2, CFG, "0 1 2 3 4 5 6 7 8 9.") is None


@pytest.mark.parametrize("no_speech", [0.305, 0.353, 0.428])
def test_a_real_goodbye_is_not_taken_for_a_hallucination(no_speech):
    """tiny.en's "Bye." on espeak-ng, MBROLA and flite callers (tests/data)."""
    assert drop_reason("Bye.", -0.4, no_speech, CFG) is None
    assert drop_reason("Bye.", -0.4, 0.5, CFG) == "hallucination"
