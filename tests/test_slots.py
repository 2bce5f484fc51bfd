"""Slot parsers on text as Whisper writes it from phone calls."""

import time
from datetime import date
from decimal import Decimal

import pytest

from voicebot.dialog.slots import (
    parse_amount,
    parse_card_last_four,
    parse_date,
    parse_digits,
    parse_phone_number,
    parse_slot,
    parse_yes_no,
)

TODAY = date(2026, 11, 24)  # a Tuesday


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("four five six seven", "4567"),
        ("Four, five, six, seven.", "4567"),
        ("It's 4-5-6-7", "4567"),
        ("4 5 6 7", "4567"),
        ("um it's double two three", "223"),
        ("triple five one", "5551"),
        ("oh one", "01"),
        ("zero nine", "09"),
        ("forty five sixty seven", "4567"),
        ("ending in 4567", "4567"),
        ("hello there", None),
        ("", None),
    ],
)
def test_digits(text, digits):
    assert parse_digits(text) == digits


@pytest.mark.parametrize(
    ("text", "four"),
    [
        ("four five six seven", "4567"),
        ("the card ending in 1234 5678 9012 4567", "4567"),
        ("its last four are 8812", "8812"),
        ("four five six", None),
        ("1234 5678", None),  # eight digits and no "ending": ambiguous, ask again
    ],
)
def test_card_last_four(text, four):
    assert parse_card_last_four(text) == four


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("five five five one two three zero zero zero two", "5551230002"),
        ("+1 555 123 0001", "+15551230001"),
        ("plus one five five five one two three zero zero zero one", "+15551230001"),
        ("555-123-0001", "5551230001"),
        ("five five five", None),
    ],
)
def test_phone_number(text, number):
    assert parse_phone_number(text) == number


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("$1,200", Decimal("1200")),
        ("1,200.50", Decimal("1200.50")),
        ("two hundred and fifty dollars", Decimal("250")),
        ("two hundred fifty", Decimal("250")),
        ("two fifty", Decimal("250")),
        ("a hundred bucks", Decimal("100")),
        ("twelve dollars and fifty cents", Decimal("12.50")),
        ("fifty cents", Decimal("0.50")),
        ("one thousand two hundred", Decimal("1200")),
        ("um let's say twenty five dollars", Decimal("25")),
        ("$200.", Decimal("200")),
        ("zero dollars", None),
        ("banana", None),
    ],
)
def test_amount(text, amount):
    assert parse_amount(text) == amount


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("today", date(2026, 11, 24)),
        ("tomorrow please", date(2026, 11, 25)),
        ("yesterday", date(2026, 11, 23)),
        ("on friday", date(2026, 11, 27)),
        ("next tuesday", date(2026, 12, 1)),
        ("last monday", date(2026, 11, 23)),
        ("the 3rd", date(2026, 12, 3)),  # already past this month: next month
        ("the twenty eighth", date(2026, 11, 28)),
        ("march 3rd", date(2027, 3, 3)),
        ("3rd of March", date(2027, 3, 3)),
        ("3/15", date(2027, 3, 15)),
        ("in two weeks", date(2026, 12, 8)),
        ("in 3 days", date(2026, 11, 27)),
        ("2026-12-15", date(2026, 12, 15)),
        ("february 30th", None),
        ("whenever", None),
    ],
)
def test_date(text, day):
    assert parse_date(text, TODAY) == day


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes please", True),
        ("Yeah, go ahead.", True),
        ("that’s right", True),  # a typographic apostrophe, as some ASR writes it
        ("uh huh", True),
        ("no", False),
        ("nope not that one", False),
        ("please don't", False),
        ("yes no", None),
        ("maybe", None),
        ("", None),
    ],
)
def test_yes_no(text, answer):
    assert parse_yes_no(text) is answer


@pytest.mark.parametrize(
    "text", ["😀😀", "¿Cuál es mi saldo?", "x" * 10_000, "four " * 10_000, "\x00\x01"]
)
def test_bad_input_is_none_or_a_value_and_fast(text):
    started = time.perf_counter()
    for kind in ("digits", "card_last_four", "phone", "amount", "date", "yes_no"):
        parse_slot(kind, text, today=TODAY)
    assert time.perf_counter() - started < 1.0


def test_unknown_slot_type_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown slot type 'color'; known: digits"):
        parse_slot("color", "red")
