"""The answer readers and the guards over what Whisper really wrote (tests/data/README.md).

Each line of ``recognizer_outputs.jsonl`` is tiny.en's output for a caller answer rendered
by another TTS engine over a phone line, or for a real recording of the ASR suite. The
figures asserted are the ones measured when the readers were written (eval/README.md,
"Answers"); they fail when a change reads real answers worse.
"""

import json
from pathlib import Path

import pytest

from voicebot.asr.guards import GuardConfig, collapse_repeats, drop_reason
from voicebot.dialog.slots import offered_actions, parse_closing, parse_digit_slot, parse_yes_no

ROWS = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "recognizer_outputs.jsonl").open()
]
NO = {"no thanks", "no, don't do that", "nope", "no, not that one", "no, leave it", "not right now"}
# The pack's confirmations the answers were said to ("Shall I send it?", "Shall I block ...").
ACTIONS = offered_actions(
    "I can text a PIN reset link. Shall I send it? Shall I block the card ending in 4 5 6 7? "
    "Shall I move 200 dollars from checking to savings?"
)


def heard(row: dict) -> str | None:
    """What the bot gets of a row: the guards' verdict on the decoder's text."""
    if drop_reason(row["text"], row["avg_logprob"], row["no_speech_prob"], GuardConfig()):
        return None
    return collapse_repeats(row["text"])


def readings(group: str, said_no: bool) -> list[bool | None]:
    return [
        parse_yes_no(text, ACTIONS) if (text := heard(r)) is not None else None
        for r in ROWS
        if r["group"] == group and (r["said"] in NO) == said_no
    ]


def test_the_file_covers_engines_lines_and_real_speech():
    sources = {r["source"].split(" | ")[0].split()[0] for r in ROWS}
    assert {"espeak-ng", "flite", "text2wave", "pico2wave"} <= sources
    assert any("mb-us1" in r["source"] for r in ROWS)  # MBROLA through espeak-ng
    assert any("white noise" in r["source"] for r in ROWS)
    assert sum(r["group"] == "speech" for r in ROWS) >= 20
    assert len(ROWS) > 1000


def test_a_said_yes_is_read_as_yes_from_its_first_words():
    read = readings("confirm", said_no=False)
    assert len(read) == 832
    assert read.count(True) / len(read) >= 0.85  # measured 0.873 (726 of 832)
    assert read.count(False) <= 9  # the recognizer itself wrote a no ("Not right.")


def test_a_said_no_is_never_read_as_yes_unless_the_recognizer_wrote_one():
    rows = [r for r in ROWS if r["group"] == "confirm" and r["said"] in NO]
    yes = [heard(r) for r in rows if heard(r) and parse_yes_no(heard(r), ACTIONS)]
    # Each one the recognizer itself wrote as an agreement (it lost the "not" of "not right
    # now", or heard "yes"): nothing in the words says no any more.
    assert yes == [
        "Yes, thank you guys.",
        "That's right, so...",
        "It's all right, now.",
        "Right out.",
        "I'm gonna correct him now.",
    ]
    assert readings("confirm", said_no=True).count(False) / len(rows) >= 0.85


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes, the car mending in 4-5-6, and run.", True),  # espeak-ng: card ending 4567
        ("Yes, it's 9-4, we're not 7.", True),  # pico2wave: "yes it's nine four one oh seven"
        ("Yes, 200 not earned clean.", True),  # espeak-ng: "yes two hundred dollars please"
        ("Yeah, not right.", None),  # two answers at once
        ("Let's go ahead.", True),  # MBROLA: "yes go ahead"
        ("Now block the card ending 4-5-6-7.", True),  # Festival: "yeah block the card..."
        ("You block the card ending for 567.", True),  # flite
        ("She'll send it.", True),  # pico2wave: "sure, send it"
        ("Please send it.", True),  # MBROLA: "yes please send it"
        ("No, don't have to do that.", False),  # flite: "no, don't do that"
        ("Right now.", None),  # "not right now" without its "not": no yes in it
    ],
)
def test_real_answers(text, answer):
    assert any(r["text"] == text for r in ROWS)  # a real output, not an invented one
    assert parse_yes_no(text, ACTIONS) is answer


def test_closings_are_read_through_the_mishearings():
    closings = [heard(r) for r in ROWS if r["group"] == "close"]
    read = [text is not None and parse_closing(text) for text in closings]
    assert len(read) == 260 and sum(read) / len(read) >= 0.84  # measured 0.842
    for text in ("No next all, thank you goodbye.", "I see it for today.", "Nice oil, bye."):
        assert text in closings and parse_closing(text)


def test_no_yes_to_a_confirmation_is_taken_for_a_goodbye_it_was_not():
    confirmations = [heard(r) for r in ROWS if r["group"] == "confirm"]
    closing = [t for t in confirmations if t and parse_closing(t)]
    # "sure, text it to me" heard as "Sure, that's it for me.": the yes comes first, and the
    # dialog reads an answer to its yes/no question as the answer (tests/test_dialog_manager).
    assert closing == ["Sure, that's it for me."] * 3
    assert all(parse_yes_no(t, ACTIONS) for t in closing)


def test_a_goodbye_is_not_dropped_as_a_hallucination():
    byes = [r for r in ROWS if r["said"] == "bye"]
    assert len(byes) == 20 and all(heard(r) for r in byes)


def test_repetition_loops_are_still_dropped():
    loops = [r for r in ROWS if len(r["text"]) > 200]
    assert loops and all(heard(r) is None for r in loops)


def test_real_speech_statements_are_never_a_yes():
    speech = [heard(r) for r in ROWS if r["group"] == "speech"]
    assert not [t for t in speech if t and parse_yes_no(t)]
    assert parse_yes_no("No.") is False and "No." in speech  # Common Voice "no"


def test_digits_in_real_speech():
    """ "for Queen of Clothes": a real recording's "four" as a homophone (CMU cards)."""
    speech = {r["said"]: heard(r) for r in ROWS if r["group"] == "speech"}
    assert parse_digit_slot("digits", speech["five five"], 2) == "55"
    assert parse_digit_slot("digits", speech["six"], 1) == "6"
    # A lone "for" is no digit: only next to other digits is a homophone read as one.
    assert speech["four queen of clubs"] == "for Queen of Clothes."
    assert parse_digit_slot("digits", speech["four queen of clubs"], 1) is None
