"""Slot parsers on text as Whisper writes it from phone calls."""

from datetime import date
from decimal import Decimal

import pytest

from voicebot.dialog.slots import (
    SLOT_TYPES,
    parse_amount,
    parse_card_last_four,
    parse_date,
    parse_digits,
    parse_phone_number,
    parse_slot,
    parse_yes_no,
    read_number,
    tokenize,
)

TODAY = date(2026, 11, 24)  # a Tuesday


# --- The shared tokenizer and number-word reader ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Four, five, six, seven.", ["four", "five", "six", "seven"]),
        ("It's 4-5-6-7", ["it's", "4", "5", "6", "7"]),
        ("twenty-five", ["twenty", "five"]),
        ("$1,200.50 please", ["$1,200.50", "please"]),
        ("1,2345", ["1", "2345"]),  # not a thousands group
        ("That’s RIGHT", ["that's", "right"]),  # typographic apostrophe
        ("the 3rd, +1 and 1.5k", ["the", "3rd", "+1", "and", "1.5k"]),
        ("１２３４", ["1234"]),  # fullwidth digits
        ("😀 ¿Qué?", ["qu"]),
        ("", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("two hundred and fifty dollars", (250, 4)),
        ("twenty five", (25, 2)),
        ("a hundred bucks", (100, 2)),
        ("a thousand", (1000, 2)),
        ("hundred", (100, 1)),
        ("one thousand two hundred", (1200, 4)),
        ("fifteen hundred", (1500, 2)),
        ("twenty five hundred", (2500, 3)),
        ("one million two hundred thousand and five", (1_200_005, 7)),
        ("five six", (5, 1)),  # digits said one by one stay separate numbers
        ("forty five sixty seven", (45, 2)),
        ("twenty thirty", (20, 1)),
        ("eleven twelve", (11, 1)),
        ("two hundred hundred", (200, 2)),  # a scale is used once
        ("one thousand thousand", (1000, 2)),
        ("zero five", (0, 1)),  # zero never combines
        ("oh one", (0, 1)),
        ("five and six", (5, 1)),  # "and" only after a scale
        ("two hundred and", (200, 2)),
        ("oh my", None),  # an interjection, not zero
        ("a few", None),
        ("banana", None),
        ("", None),
    ],
)
def test_read_number(words, expected):
    """(value, words used) of the number at the start, or None."""
    found = read_number(words.split(), 0)
    assert ((found.value, found.end) if found else None) == expected


@pytest.mark.parametrize(
    ("words", "value", "ordinal"),
    [
        ("twenty eighth", 28, True),
        ("third of march", 3, True),
        ("thirty first", 31, True),
        ("twentieth", 20, True),
        ("one hundredth", 100, True),
        ("twenty five", 25, False),
    ],
)
def test_read_number_ordinals(words, value, ordinal):
    found = read_number(words.split(), 0, ordinals=True)
    assert found is not None and (found.value, found.ordinal) == (value, ordinal)


def test_read_number_starts_mid_sentence_and_skips_pronoun_one():
    words = ["the", "one", "ending", "in", "forty", "five"]
    assert read_number(words, 1) is None  # "the one": a pronoun
    assert read_number(words, 4) == (45, 6, False, False)
    assert read_number(words, 99) is None


# --- Digits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("four five six seven", "4567"),
        ("Four, five, six, seven.", "4567"),
        ("It's 4-5-6-7", "4567"),
        ("4 5 6 7", "4567"),
        ("4567", "4567"),
        ("double two three", "223"),
        ("um it's double two three", "223"),
        ("triple five one", "5551"),
        ("double oh seven", "007"),
        ("Double 812", "8812"),  # tiny.en on Piper's "double eight one two" (eval digits)
        ("Double 3 1 0 1", "33101"),
        ("oh one", "01"),
        ("zero nine", "09"),
        ("0123", "0123"),  # leading zeros kept
        ("forty five sixty seven", "4567"),
        ("forty-five sixty-seven", "4567"),
        ("ending in 4567", "4567"),
        ("nine oh two one oh", "90210"),
        ("Oh, it's 4567.", "4567"),  # "oh" as an interjection is not a zero
        ("uh like nine four one zero seven", "94107"),
        ("twenty oh five", "2005"),
        ("nineteen ninety nine", "1999"),
        ("one hundred", "100"),
        ("the one ending in 4567", "4567"),
        ("45 sixty seven", "4567"),
        ("４５６７", "4567"),
        ("4️⃣5️⃣6️⃣7️⃣", "4567"),  # keycap emoji are digits too
        ("double check it", None),
        ("hello there", None),
        ("", None),
        ("   ", None),
    ],
)
def test_digits(text, digits):
    assert parse_digits(text) == digits


# --- Card last four ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "four"),
    [
        ("four five six seven", "4567"),
        ("Four, five, six, seven.", "4567"),
        ("It's 4-5-6-7", "4567"),
        ("forty five sixty seven", "4567"),
        ("four thousand five hundred sixty seven", "4567"),
        ("double four five six", "4456"),
        ("ending in 4567", "4567"),
        ("the one ending in 4567", "4567"),
        ("it ends with double oh one two", "0012"),
        ("the card ending in 1234 5678 9012 4567", "4567"),
        ("its last four are 8812", "8812"),
        ("the last four digits are four five six seven", "4567"),
        ("4567 is the last four", "4567"),
        ("um, uh, like, 4567", "4567"),
        ("four five six", None),
        ("four five six seven eight", None),
        ("1234 5678", None),  # eight digits and no "ending": ambiguous, ask again
        ("ending in 456", None),
        ("I don't know", None),
        ("", None),
    ],
)
def test_card_last_four(text, four):
    assert parse_card_last_four(text) == four


# --- Phone numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("five five five one two three zero zero zero two", "5551230002"),
        ("+1 555 123 0001", "+15551230001"),
        ("plus one five five five one two three zero zero zero one", "+15551230001"),
        ("555-123-0001", "5551230001"),
        ("(555) 123-4567", "5551234567"),
        ("It's 555.123.4567", "5551234567"),
        ("my number is five five five, double one two, three four five six", "5551123456"),
        ("triple five, one two three, oh oh oh one", "5551230001"),
        ("Oh, my number is 555 123 4567.", "5551234567"),
        ("plus four four seven nine one one one two three four five six", "+447911123456"),
        ("1-800-555-1212", "18005551212"),
        ("five five five", None),
        ("555 1234", None),  # seven digits: not a full number
        ("1234567890123456", None),  # sixteen: too long
        ("call me maybe", None),
    ],
)
def test_phone_number(text, number):
    assert parse_phone_number(text) == number


# --- Amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("$1,200", Decimal("1200")),
        ("1,200.50", Decimal("1200.50")),
        ("$1,200.50.", Decimal("1200.50")),
        ("two hundred and fifty dollars", Decimal("250")),
        ("two hundred fifty", Decimal("250")),
        ("Two-hundred-fifty dollars.", Decimal("250")),
        ("two fifty", Decimal("250")),  # alone, as an amount reply
        ("two fifty dollars", Decimal("250")),
        ("twelve fifty", Decimal("1250")),
        ("a hundred bucks", Decimal("100")),
        ("twelve dollars and fifty cents", Decimal("12.50")),
        ("twelve dollars fifty", Decimal("12.50")),
        ("$12 and 50 cents", Decimal("12.50")),
        ("fifty cents", Decimal("0.50")),
        ("one thousand two hundred", Decimal("1200")),
        ("fifteen hundred dollars", Decimal("1500")),
        ("1.5k", Decimal("1500")),
        ("two grand", Decimal("2000")),
        ("um let's say twenty five dollars", Decimal("25")),
        ("like, uh, 300", Decimal("300")),
        ("$200.", Decimal("200")),
        ("one dollar", Decimal("1")),
        ("I have 2 cards, pay fifty dollars", Decimal("50")),  # "dollars" marks the amount
        ("fifty dollars, no, sixty", Decimal("60")),  # a correction
        ("pay 200 dollars on the card ending in 4567", Decimal("200")),
        ("pay the card ending in 4567", None),  # a card, not money
        ("fifty or sixty", None),  # two amounts: ask again
        ("$5 or $6", None),
        ("four five six seven", None),
        ("zero dollars", None),
        ("1.234", None),  # fractions of a cent
        ("$3rd", None),
        ("9" * 40, None),
        ("banana", None),
        ("", None),
    ],
)
def test_amount(text, amount):
    assert parse_amount(text) == amount


def test_amount_is_a_decimal():
    assert isinstance(parse_amount("twelve dollars and fifty cents"), Decimal)


# --- Dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("today", date(2026, 11, 24)),
        ("Today's fine.", date(2026, 11, 24)),
        ("tomorrow please", date(2026, 11, 25)),
        ("yesterday", date(2026, 11, 23)),
        ("the day after tomorrow", date(2026, 11, 26)),
        ("on friday", date(2026, 11, 27)),
        ("this friday", date(2026, 11, 27)),
        ("next friday", date(2026, 11, 27)),  # the next such day
        ("next tuesday", date(2026, 12, 1)),  # today excluded
        ("Tuesday.", date(2026, 12, 1)),
        ("last monday", date(2026, 11, 23)),
        ("last tuesday", date(2026, 11, 17)),
        ("this past friday", date(2026, 11, 20)),
        ("the 3rd", date(2026, 12, 3)),  # already past this month: next month
        ("the third", date(2026, 12, 3)),
        ("on the 24th", date(2026, 11, 24)),  # today is not past
        ("the twenty eighth", date(2026, 11, 28)),
        ("um, the twenty-eighth", date(2026, 11, 28)),
        ("on the 30", date(2026, 11, 30)),
        ("thirtieth", date(2026, 11, 30)),
        ("the 31st", date(2026, 12, 31)),  # no November 31st
        ("march 3rd", date(2027, 3, 3)),
        ("3rd of march", date(2027, 3, 3)),
        ("the third of March", date(2027, 3, 3)),
        ("march third", date(2027, 3, 3)),
        ("March the third.", date(2027, 3, 3)),
        ("december 5", date(2026, 12, 5)),
        ("the twenty third of december", date(2026, 12, 23)),
        ("March 3rd, 2028", date(2028, 3, 3)),
        ("may I pay on the 5th", date(2026, 12, 5)),  # "may" is no month here
        ("3/15", date(2027, 3, 15)),
        ("12/1", date(2026, 12, 1)),
        ("3/15/27", date(2027, 3, 15)),
        ("in two weeks", date(2026, 12, 8)),
        ("in 3 days", date(2026, 11, 27)),
        ("in a week", date(2026, 12, 1)),
        ("in a couple of days", date(2026, 11, 26)),
        ("in twenty one days", date(2026, 12, 15)),
        ("in a month", date(2026, 12, 24)),
        ("two weeks from today", date(2026, 12, 8)),
        ("2026-03-15", date(2026, 3, 15)),
        ("2026-12-15", date(2026, 12, 15)),
        ("february 30th", None),
        ("the 30th of february", None),
        ("2026-02-30", None),
        ("13/45", None),
        ("in a million days", None),
        ("give me a second", None),
        ("the two of us", None),
        ("march", None),
        ("whenever", None),
        ("", None),
    ],
)
def test_date(text, day):
    assert parse_date(text, TODAY) == day


def test_date_rolls_into_next_year():
    assert parse_date("the 3rd", date(2026, 12, 24)) == date(2027, 1, 3)
    assert parse_date("in a month", date(2027, 1, 31)) == date(2027, 2, 28)


# --- Yes / no ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", True),
        ("Yes.", True),
        ("YES!", True),
        ("yes please", True),
        ("yeah", True),
        ("Yep.", True),
        ("sure", True),
        ("Yeah, go ahead.", True),
        ("go ahead", True),
        ("please do", True),
        ("that's right", True),
        ("that’s right", True),  # a typographic apostrophe, as some ASR writes it
        ("thats right", True),
        ("correct", True),
        ("That's correct.", True),
        ("uh huh", True),
        ("Uh-huh.", True),
        ("mm-hmm", True),
        ("okay", True),
        ("um, yeah, sure", True),
        ("no problem", True),
        ("Sure, why not.", True),
        ("no", False),
        ("No.", False),
        ("nope", False),
        ("nope not that one", False),
        ("nah", False),
        ("don't", False),
        ("please don't", False),
        ("no don't", False),
        ("not really", False),
        ("that's wrong", False),
        ("that's not right", False),
        ("that isn't correct", False),
        ("Absolutely not.", False),
        ("don't do it", False),
        ("I don't think so", False),
        ("Uh-uh.", False),
        ("No. Don't.", False),
        ("yes no", None),
        ("yeah, no", None),
        ("No, go ahead.", None),
        ("I don't know", None),
        ("I'm not sure", None),
        ("maybe", None),
        ("I can't hear you", None),
        ("what was that", None),
        ("", None),
    ],
)
def test_yes_no(text, answer):
    assert parse_yes_no(text) is answer


# --- Registry ---------------------------------------------------------------------------------


def test_slot_types_are_the_documented_ones():
    assert set(SLOT_TYPES) == {
        "digits",
        "card_last_four",
        "phone",
        "amount",
        "date",
        "yes_no",
        "text",
    }


@pytest.mark.parametrize(
    ("type_name", "text", "value"),
    [
        ("digits", "nine four one zero seven", "94107"),
        ("card_last_four", "ending in 4567", "4567"),
        ("phone", "555-123-0001", "5551230001"),
        ("amount", "two hundred dollars", Decimal("200")),
        ("date", "tomorrow", date(2026, 11, 25)),
        ("yes_no", "yes please", True),
        ("yes_no", "nope", False),
        ("amount", "banana", None),
    ],
)
def test_parse_slot_dispatches(type_name, text, value):
    assert parse_slot(type_name, text, today=TODAY) == value


def test_parse_slot_defaults_today_to_the_real_date():
    assert parse_slot("date", "today") == date.today()


def test_unknown_slot_type_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown slot type 'color'; known: digits, card_last"):
        parse_slot("color", "red")


# --- Robustness -------------------------------------------------------------------------------

_HOSTILE = [
    "",
    " \t\n",
    "😀😀",
    "🎉🎉 👍",
    "¿Cuál es mi saldo?",
    "Je voudrais payer deux cents euros",
    "cuatro cinco seis siete",
    "我的卡号是四五六七",
    "Мой номер карты",
    "\x00\x01\x02",
    "...,,,!!!",
]


@pytest.mark.parametrize("text", _HOSTILE)
@pytest.mark.parametrize("type_name", sorted(set(SLOT_TYPES) - {"text"}))  # any words are text
def test_other_languages_and_noise_are_none(type_name, text):
    assert parse_slot(type_name, text, today=TODAY) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the staff  were rude to me", "the staff were rude to me"),
        ("Je voudrais me plaindre", "Je voudrais me plaindre"),
        ("um", None),
        ("yes please", None),
        ("...,,,!!!", None),
    ],
)
def test_free_text_needs_a_few_words(text, expected):
    assert parse_slot("text", text, today=TODAY) == expected


_LONG = [
    "x" * 10_000,
    "four " * 2_000,
    "one hundred " * 833,
    "double " * 1_400,
    "9" * 10_000,
    "1," * 5_000,
    "$" + "1,000" * 2_000,
    "the 3rd " * 1_250,
    "yes no " * 1_428,
    "in a in a " * 1_000,
    "forty five sixty seven " * 434,
    "😀" * 10_000,
]


@pytest.mark.parametrize("text", _LONG)
def test_long_text_does_not_crash(text):
    for type_name in SLOT_TYPES:  # how fast: scripts/bench_text.py
        parse_slot(type_name, text, today=TODAY)


def test_long_text_keeps_its_answer():
    filler = "um, so, like, " * 700  # about 10,000 characters before the answer
    assert parse_card_last_four(filler + "ending in 4567") == "4567"
    assert parse_yes_no(filler + "yes") is True
    assert parse_amount(filler + "fifty dollars") == Decimal("50")
