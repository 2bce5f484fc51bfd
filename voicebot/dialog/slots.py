"""Slot values from spoken text, as Whisper writes it on a phone call.

Why plain functions and no model: slot answers are short and their grammar is small (numbers,
dates, yes/no); money and card numbers must be exact, not likely; and the parsers run inside
the call loop, so they must take microseconds and be testable line by line.

Callers say numbers every way at once ("4567", "four five six seven", "forty five sixty
seven", "double two", "oh" for zero, "two hundred and fifty dollars", "$1,200") and Whisper
adds case, punctuation, hyphens and typographic apostrophes. All parsers share one normaliser
(`tokenize`) and one number-word reader (`read_number`), so a fix to either reaches every slot.

Every parser returns None when it finds nothing valid *or* when the answer is ambiguous: the
dialog turns None into a re-prompt, which is cheaper than acting on a guess. All work is linear
in the length of the text, so a runaway transcript cannot stall a call.
"""

import calendar
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

# --- Vocabulary -------------------------------------------------------------------------------

ZERO_WORDS = frozenset({"zero", "oh", "o"})
UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9,
}  # fmt: skip
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
REPEATS = {"double": 2, "triple": 3}  # "double two" is "22", as phone numbers are read

_IRREGULAR_ORDINALS = {
    "first": "one", "second": "two", "third": "three", "fifth": "five", "eighth": "eight",
    "ninth": "nine", "twelfth": "twelve",
}  # fmt: skip
# Ordinal word -> its cardinal word: "twentieth" -> "twenty", "fourth" -> "four".
ORDINALS = {
    (word[:-1] + "ieth" if word.endswith("y") else word + "th"): word
    for word in [*UNITS, *TEENS, *TENS, *SCALES]
    if word not in _IRREGULAR_ORDINALS.values()
} | _IRREGULAR_ORDINALS

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name} | {"sept": 9}
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}

_NUMBER_WORDS = frozenset([*ZERO_WORDS, *UNITS, *TEENS, *TENS, *SCALES, *REPEATS])
# "the one ending in 4567", "no one": here "one" is a pronoun, not a digit.
_DETERMINERS = frozenset(
    {"the", "this", "that", "which", "no", "any", "every", "each", "some", "another", "other"}
)

# --- Text to tokens ---------------------------------------------------------------------------

_PUNCTUATION = str.maketrans(
    {"’": "'", "‘": "'", "ʼ": "'", "`": "'", "‐": "-", "‑": "-", "–": "-", "—": "-"}
)
# A numeral keeps its currency/plus sign, thousands commas, decimals and an ordinal or "k"
# suffix ("$1,200.50", "+1", "3rd", "1.5k"); words keep their apostrophes ("that's", "don't").
# Hyphens and all other punctuation separate tokens ("twenty-five", "4-5-6-7").
_TOKEN = re.compile(
    r"[$+]?[0-9]+(?:,[0-9]{3}(?![0-9]))*(?:\.[0-9]+)?(?:(?:st|nd|rd|th|k)(?![a-z]))?"
    r"|[a-z]+(?:'[a-z]+)*"
)
_NUMERAL_SUFFIX = re.compile(r"(?:st|nd|rd|th|k)$")


def _normalize(text: str) -> str:
    """NFKC (fullwidth digits become ASCII), ASCII apostrophes and hyphens, lower case."""
    return unicodedata.normalize("NFKC", text).translate(_PUNCTUATION).lower()


def tokenize(text: str) -> list[str]:
    """Lower-case words and numerals, the one token stream every parser reads.

    Only ASCII letters and digits make tokens, so emoji and scripts other than Latin fall
    away and cannot be mistaken for numbers.
    """
    return _TOKEN.findall(_normalize(text))


def token_spans(text: str) -> list[tuple[str, int, int]]:
    """``tokenize`` with where each token lies in ``text``: (token, start, end). For masking
    the very characters a value was read from (``voicebot.privacy``)."""
    origin: list[int] = []  # normalized character -> index of the character it came from
    pieces = []
    for index, char in enumerate(text):
        piece = _normalize(char)
        pieces.append(piece)
        origin.extend([index] * len(piece))
    return [
        (match.group(), origin[match.start()], origin[match.end() - 1] + 1)
        for match in _TOKEN.finditer("".join(pieces))
    ]


def _is_numeral(token: str) -> bool:
    return token[:1] in ("$", "+") or token[:1].isdigit()


def _numeral_digits(token: str) -> str:
    """The digits a numeral token shows, leading zeros kept: "0123" -> "0123", "$1,200" ->
    "1200"."""
    return re.sub(r"[^0-9]", "", _NUMERAL_SUFFIX.sub("", token))


def _numberish(token: str) -> bool:
    return _is_numeral(token) or token in _NUMBER_WORDS


# --- The shared number-word reader ------------------------------------------------------------


class SpokenNumber(NamedTuple):
    """A number read from words: its value, where it ended, and how it was said."""

    value: int
    end: int  # index just past the last word used
    ordinal: bool = False  # ended in an ordinal word: "twenty third"
    scaled: bool = False  # used "hundred", "thousand" or "million"


def read_number(words: Sequence[str], start: int, *, ordinals: bool = False) -> SpokenNumber | None:
    """Read the cardinal number spoken from ``words[start]`` on, or None if none starts there.

    Follows English number grammar, so that a run of digits said one by one stays separate
    numbers ("five six" is 5, then 6; "forty five sixty seven" is 45, then 67) while
    "two hundred and fifty", "twenty-five", "a hundred", "fifteen hundred" and "one million
    two hundred thousand" are one number each. "zero"/"oh" are always a number on their own
    ("oh" only next to other numbers, since it is usually an interjection). With
    ``ordinals`` a final ordinal word ends the number ("the twenty third" -> 23).
    Each scale is used at most once, in falling order, so values stay small.
    """
    n = len(words)
    if start >= n:
        return None
    first = words[start]
    if first in ZERO_WORDS:
        if first != "zero" and not _touches_number(words, start):
            return None
        return SpokenNumber(0, start + 1)
    total = group = last_scale = 0
    hundreds = scaled = False
    tail = ""  # what the group's last two digits hold: "" (nothing yet), "tens" or "done"
    end = i = start
    if first in ("a", "an") and start + 1 < n and words[start + 1] in SCALES:
        group, i = 1, start + 1  # "a hundred", "a thousand"
    while i < n:
        word = words[i]
        ordinal = ordinals and word in ORDINALS
        if ordinal:
            word = ORDINALS[word]
        if word in UNITS and tail in ("", "tens"):
            group, tail = group + UNITS[word], "done"
        elif word in TEENS and not tail:
            group, tail = group + TEENS[word], "done"
        elif word in TENS and not tail:
            group, tail = group + TENS[word], "tens"
        elif word == "hundred" and not hundreds and (0 < group < 100 or i == start):
            group, hundreds, scaled, tail = (group or 1) * 100, True, True, ""
        elif (
            word in ("thousand", "million")
            and (group or i == start)
            and (not last_scale or SCALES[word] < last_scale)
        ):
            total += (group or 1) * SCALES[word]
            group, last_scale, hundreds, scaled, tail = 0, SCALES[word], False, True, ""
        elif word == "and" and scaled and not tail and _starts_small_number(words, i + 1, ordinals):
            i += 1  # "two hundred and fifty"
            continue
        else:
            break
        i = end = i + 1
        if ordinal:
            return SpokenNumber(total + group, end, True, scaled)
    if end == start:
        return None
    if first == "one" and end == start + 1 and start and words[start - 1] in _DETERMINERS:
        return None
    return SpokenNumber(total + group, end, False, scaled)


def _touches_number(words: Sequence[str], i: int) -> bool:
    return (i > 0 and _numberish(words[i - 1])) or (i + 1 < len(words) and _numberish(words[i + 1]))


def _starts_small_number(words: Sequence[str], i: int, ordinals: bool) -> bool:
    if i >= len(words):
        return False
    word = ORDINALS.get(words[i], words[i]) if ordinals else words[i]
    return word in UNITS or word in TEENS or word in TENS


# --- Digits, cards, phone numbers -------------------------------------------------------------


class DigitRun(NamedTuple):
    """The digits spoken in a stretch of words, and what else was said around them."""

    digits: str
    first: int | None  # index of the first word that gave a digit
    others: int  # words that are not part of a number ("it's", "my", "zip")


def _digit_run(words: Sequence[str]) -> DigitRun:
    """All digits spoken in ``words``, where they start, and how many other words there are."""
    out: list[str] = []
    first: int | None = None
    repeat = 1
    others = i = 0
    while i < len(words):
        word = words[i]
        if word in REPEATS:
            repeat = REPEATS[word]
            i += 1
            continue
        start = i
        if _is_numeral(word):
            piece, i = _numeral_digits(word), i + 1
            # "Double 812": Whisper wrote "double eight one two" with the digits after
            # "double" as one numeral, so the repeat is of its first digit.
            piece = piece[0] * repeat + piece[1:] if piece else piece
            repeat = 1
        elif (number := read_number(words, i)) is not None:
            piece, i = str(number.value), number.end
        else:
            piece, i, others = "", i + 1, others + 1
        if piece:
            out.append(piece * repeat)
            first = start if first is None else first
        repeat = 1
    return DigitRun("".join(out), first, others)


def digit_run(text: str) -> DigitRun:
    """The digits ``text`` speaks (as ``parse_digits`` reads them) and the count of other
    words: the hallucination guards use it to tell a digit answer from a decoding loop."""
    return _digit_run(tokenize(text))


def is_number_word(token: str) -> bool:
    """A token that is (part of) a spoken number: "4567", "four", "oh", "double"."""
    return _numberish(_normalize(token).strip(".,!?;:-"))


def parse_digits(text: str) -> str | None:
    """The digit string a caller spoke, for ZIP codes, PINs and account numbers.

    Digits are kept as a string because leading zeros matter ("oh one" -> "01"). Accepts
    "four five six seven", "4 5 6 7", "It's 4-5-6-7", "double two three" ("223"), and pairs
    as card endings are read ("forty five sixty seven" -> "4567"). Other words are ignored.
    """
    return _digit_run(tokenize(text)).digits or None


# Words Whisper writes for a digit it misheard as a word ("ending for 567" for "ending four
# five six seven"): read as that digit only next to other digits, and only when that gives
# the answer exactly the length it must have.
_DIGIT_HOMOPHONES = {"for": "four", "fore": "four", "to": "two", "too": "two", "won": "one"}
_DIGIT_HOMOPHONES |= {"ate": "eight"}


def read_digits(text: str, length: int | None = None) -> str:
    """The digits of a digit answer ("" for none), read knowing its ``length`` when the
    question fixes it (a ZIP code: 5): Whisper's homophones of digits next to other digits
    count then, if that makes the answer exactly ``length`` long ("for 567" -> "4567").
    A result of another length is returned as heard, for the dialog to re-ask."""
    words = tokenize(text)
    plain = _digit_run(words).digits
    if length is None or len(plain) == length:
        return plain
    read = [
        _DIGIT_HOMOPHONES[w] if w in _DIGIT_HOMOPHONES and _touches_number(words, i) else w
        for i, w in enumerate(words)
    ]
    fixed = _digit_run(read).digits
    return fixed if len(fixed) == length else plain


_ENDING_CUES = frozenset({"ending", "ends", "end", "ended"})


def _ending_cue(words: Sequence[str]) -> tuple[int, int] | None:
    """Where "ending in", "ends with" or "last four (digits)" is said: (start, end) indexes."""
    for k, word in enumerate(words):
        if word in _ENDING_CUES:
            end = k + 1
        elif word == "last" and k + 1 < len(words) and words[k + 1] in ("four", "4"):
            end = k + 2
        else:
            continue
        while end < len(words) and words[end] in ("in", "with", "digits", "numbers", "are", "is"):
            end += 1
        return k, end
    return None


def parse_card_last_four(text: str) -> str | None:
    """The last four digits of a card: exactly four digits, or the last four of a longer
    number when the caller says "ending in ..." (some read the whole card number).

    "last four" is a cue, not the digit 4, so "its last four are 8812" gives "8812".
    Eight digits without a cue are ambiguous and give None.
    """
    words = tokenize(text)
    cue = _ending_cue(words)
    if cue is None:
        digits = _digit_run(words).digits
        return digits if len(digits) == 4 else None
    after = _digit_run(words[cue[1] :]).digits
    if after:
        return after[-4:] if len(after) >= 4 else None
    before = _digit_run(words[: cue[0]]).digits  # "4567 is the last four"
    return before if len(before) == 4 else None


def parse_phone_number(text: str) -> str | None:
    """A phone number as digits only, 10 to 15 of them (a US number with its area code, up to
    the E.164 maximum), with a leading "+" kept when the caller said or wrote one ("plus one
    ...", "+1 555 ...").

    Spaces, dashes, brackets and "double"/"triple" are all read; anything shorter than ten
    digits is a partial number and gives None so the caller is asked again.
    """
    words = tokenize(text)
    digits, first, _ = _digit_run(words)
    if first is None or not 10 <= len(digits) <= 15:
        return None
    plus = words[first].startswith("+") or (first > 0 and words[first - 1] == "plus")
    return f"+{digits}" if plus else digits


# --- Money ------------------------------------------------------------------------------------

_CURRENCY = frozenset({"dollar", "dollars", "buck", "bucks", "usd"})
_CENTS = frozenset({"cent", "cents"})
_THOUSANDS = frozenset({"k", "grand"})  # "5 k", "two grand"
# "fifty dollars, no, sixty": only what follows the last correction counts.
_CORRECTIONS = frozenset({"no", "sorry", "actually", "wait", "rather", "mean"})
_CENT = Decimal("0.01")
_MAX_AMOUNT = Decimal(10) ** 12  # beyond any payment: a digit run, not money


def _numeral_amount(token: str) -> Decimal | None:
    if token.startswith("+") or re.search(r"(?:st|nd|rd|th)$", token):
        return None  # "+1" is a phone prefix, "3rd" a date
    body = token.lstrip("$").replace(",", "")
    scale = 1000 if body.endswith("k") else 1
    try:
        return Decimal(body.removesuffix("k")) * scale
    except InvalidOperation:
        return None


def _bare_amount(words: Sequence[str], i: int) -> tuple[Decimal, int, bool] | None:
    """A number starting at ``i`` as money: (value, end, said with "$")."""
    word = words[i]
    if _is_numeral(word):
        value = _numeral_amount(word)
        return None if value is None else (value, i + 1, word.startswith("$"))
    number = read_number(words, i)
    if number is None:
        return None
    # "two fifty" is read like a price tag: 250, as is "twelve fifty" (1250).
    if not number.scaled and 0 < number.value < 100:
        follow = read_number(words, number.end)
        if follow and not follow.scaled and 10 <= follow.value < 100:
            return Decimal(number.value * 100 + follow.value), follow.end, False
    return Decimal(number.value), number.end, False


def _cents_after(words: Sequence[str], i: int, said_currency: bool) -> tuple[Decimal, int] | None:
    """The cents after a dollar amount: "and fifty cents", or "fifty" after "dollars"."""
    j = i + 1 if i < len(words) and words[i] == "and" else i
    found = _bare_amount(words, j) if j < len(words) else None
    if found is None or found[2] or not (0 < found[0] < 100) or found[0] % 1:
        return None
    value, end, _ = found
    after = words[end] if end < len(words) else ""
    if after in _CENTS:
        return value / 100, end + 1
    if said_currency and after not in _CURRENCY and after not in _THOUSANDS:
        return value / 100, end  # "twelve dollars fifty"
    return None


def parse_amount(text: str) -> Decimal | None:
    """An amount of money as a Decimal (never float: it is money).

    Reads "$1,200", "1,200.50", "1.5k", "two hundred and fifty dollars", "two fifty" (250),
    "a hundred bucks", "twelve dollars and fifty cents", "fifty cents", "two grand".
    An amount said with "$", "dollars" or "cents" wins over other numbers in the sentence;
    without one, the sentence must hold exactly one number. Numbers after "ending in" are a
    card, not money, and after a correction ("fifty dollars, no, sixty") only the corrected
    amount counts. Two different amounts otherwise, zero, or fractions of a cent give None:
    the caller is asked again rather than charged a guess.
    """
    words = tokenize(text)
    cue = _ending_cue(words)
    skip_from, skip_to = (cue[1], cue[1]) if cue else (-1, -1)
    while 0 <= skip_to < len(words) and _numberish(words[skip_to]):
        skip_to += 1  # the card digits after "ending in"
    found_amounts: list[tuple[int, Decimal, bool]] = []  # (where, value, said as money)
    corrected_at = -1
    i = 0
    while i < len(words):
        if i == skip_from:
            i = skip_to
            continue
        start, found = i, _bare_amount(words, i)
        if found is None:
            corrected_at = i if words[i] in _CORRECTIONS else corrected_at
            i += 1
            continue
        value, i, is_marked = found
        unit = words[i] if i < len(words) else ""
        if unit in _THOUSANDS:
            value, is_marked, i = value * 1000, True, i + 1
            unit = words[i] if i < len(words) else ""
        if unit in _CENTS:
            value, is_marked, i = value / 100, True, i + 1
        elif unit in _CURRENCY:
            is_marked, i = True, i + 1
            if cents := _cents_after(words, i, said_currency=True):
                value, i = value + cents[0], cents[1]
        elif is_marked and (cents := _cents_after(words, i, said_currency=False)):
            value, i = value + cents[0], cents[1]  # "$12 and 50 cents"
        found_amounts.append((start, value, is_marked))
    corrected = [a for a in found_amounts if a[0] > corrected_at]
    pool = corrected or found_amounts
    marked = {value for _, value, is_marked in pool if is_marked}
    choices = marked or {value for _, value, _ in pool}
    if len(choices) != 1:
        return None
    amount = choices.pop()
    if not 0 < amount < _MAX_AMOUNT or amount != amount.quantize(_CENT):
        return None
    return amount


# --- Dates ------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"\b([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})\b")
_US_DATE = re.compile(r"\b([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}|[0-9]{2}))?\b")
_RELATIVE_DAYS = {
    ("day", "after", "tomorrow"): 2, ("day", "before", "yesterday"): -2, ("today",): 0,
    ("tonight",): 0, ("tomorrow",): 1, ("yesterday",): -1,
}  # fmt: skip
_PERIODS = {"day": 1, "days": 1, "week": 7, "weeks": 7, "fortnight": 14}
_MONTH_PERIODS = frozenset({"month", "months"})
_MAX_OFFSET = 3660  # days: "in a million days" is not a date anyone can book


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _add_months(day: date, months: int) -> date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _next_occurrence(today: date, month: int, day: int) -> date | None:
    """This year's date if it is still ahead, else next year's; None if it never exists."""
    this_year = _safe_date(today.year, month, day)
    if this_year is None or this_year >= today:
        return this_year
    return _safe_date(today.year + 1, month, day)


def _count_at(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """A small count for "in two weeks", "in 3 days", "in a week", "in a couple of days"."""
    if i >= len(words):
        return None
    word = words[i]
    if _is_numeral(word):
        return (int(word), i + 1) if word.isdigit() and len(word) <= 4 else None
    if word in ("a", "an") and i + 1 < len(words) and words[i + 1] == "couple":
        return 2, (i + 3 if i + 2 < len(words) and words[i + 2] == "of" else i + 2)
    if word in ("a", "an") and i + 1 < len(words) and words[i + 1] not in SCALES:
        return 1, i + 1
    number = read_number(words, i)
    return (number.value, number.end) if number else None


def _offset_date(words: Sequence[str], today: date) -> date | None:
    """ "in two weeks", "in 3 days", "within a month", "two weeks from today"."""
    for i, word in enumerate(words):
        from_now = word not in ("in", "within")
        count = _count_at(words, i if from_now else i + 1)
        if count is None or count[1] >= len(words):
            continue
        value, end = count
        period = words[end]
        if period not in _PERIODS and period not in _MONTH_PERIODS:
            continue
        if from_now and words[end + 1 : end + 3] not in (["from", "now"], ["from", "today"]):
            continue
        if period in _MONTH_PERIODS:
            return _add_months(today, value) if value <= _MAX_OFFSET // 30 else None
        days = value * _PERIODS[period]
        return today + timedelta(days=days) if days <= _MAX_OFFSET else None
    return None


def _day_at(words: Sequence[str], i: int) -> tuple[int, int, bool] | None:
    """A day of the month starting at ``i``: (day, end, said as an ordinal: "3rd", "third")."""
    if i >= len(words):
        return None
    word = words[i]
    if _is_numeral(word):
        match = re.fullmatch(r"([0-9]{1,2})(st|nd|rd|th)?", word)
        if match is None:
            return None
        day, ordinal, end = int(match[1]), bool(match[2]), i + 1
    else:
        number = read_number(words, i, ordinals=True)
        if number is None or number.scaled:
            return None
        day, ordinal, end = number.value, number.ordinal, number.end
    return (day, end, ordinal) if 1 <= day <= 31 else None


def _year_at(words: Sequence[str], i: int) -> int | None:
    if i < len(words) and re.fullmatch(r"(?:19|20)[0-9]{2}", words[i]):
        return int(words[i])
    return None


def _calendar_date(words: Sequence[str]) -> tuple[int, int, int | None] | None:
    """(month, day, year or None) for "march 3rd", "march the third", "3rd of march", "the
    third of march, 2027": the parts as said, checked by the caller (february 30 is said)."""
    for j, word in enumerate(words):
        if word not in MONTHS:
            continue
        month = MONTHS[word]
        k = j + 2 if j + 1 < len(words) and words[j + 1] == "the" else j + 1
        found = _day_at(words, k)
        if found is not None:
            day, end, _ = found
        else:  # the day comes first: "3rd of march", "the twenty third of march"
            stop = j - 1 if j and words[j - 1] == "of" else j
            before = (_day_at(words, s) for s in range(max(0, stop - 2), stop))
            found = next((d for d in before if d is not None and d[1] == stop), None)
            if found is None:
                continue  # "may I pay ...": a month name with no day is not a date
            day, end = found[0], j + 1
        return month, day, _year_at(words, end)
    return None


def _weekday_date(words: Sequence[str], today: date) -> date | None:
    """ "friday", "on/this/next friday" (the next one, today excluded), "last monday"."""
    for i, word in enumerate(words):
        if word not in WEEKDAYS:
            continue
        target = WEEKDAYS[word]
        if i and words[i - 1] in ("last", "past", "previous"):
            return today - timedelta(days=(today.weekday() - target) % 7 or 7)
        return today + timedelta(days=(target - today.weekday()) % 7 or 7)
    return None


def _day_of_month_date(words: Sequence[str], today: date) -> date | None:
    """ "the 3rd", "the twenty eighth", "on the 15": this month if not past, else next month."""
    for i, word in enumerate(words):
        found = _day_at(words, i)
        if found is None:
            continue
        day, _, ordinal = found
        after_article = i > 0 and words[i - 1] in ("the", "on")
        # "3rd" is a day anywhere and a bare "15" after "the"/"on". "third" needs "the"/"on"
        # too ("give me a second" is no date) unless it opens the answer; "the two" never.
        if _is_numeral(word):
            if not (ordinal or after_article):
                continue
        elif not (ordinal and (after_article or i == 0)):
            continue
        this_month = _safe_date(today.year, today.month, day)
        if this_month is not None and this_month >= today:
            return this_month
        return _safe_date(today.year + today.month // 12, today.month % 12 + 1, day)
    return None


def parse_date(text: str, today: date) -> date | None:
    """A calendar date from what the caller said, resolved against ``today`` (passed in, so
    that a call near midnight and every test see one fixed day).

    Reads "today", "tomorrow", "yesterday", "the day after tomorrow", weekdays ("friday",
    "on/this/next friday": the next such day, today excluded; "last monday"), "the 3rd" /
    "the third" (this month if not past, else next month), "march 3rd", "3rd of march",
    "march third" (the next such date), "3/15" (US month/day), "in two weeks", "in 3 days",
    "2026-03-15". Dates that do not exist ("february 30th") give None.
    """
    normalized = _normalize(text)
    if match := _ISO_DATE.search(normalized):
        return _safe_date(int(match[1]), int(match[2]), int(match[3]))
    if match := _US_DATE.search(normalized):
        month, day = int(match[1]), int(match[2])
        if match[3] is None:
            return _next_occurrence(today, month, day)
        year = int(match[3]) + (2000 if len(match[3]) == 2 else 0)
        return _safe_date(year, month, day)
    words = [word.removesuffix("'s") for word in _TOKEN.findall(normalized)]  # "today's"
    if (offset := _offset_date(words, today)) is not None:
        return offset
    for i in range(len(words)):
        for phrase, delta in _RELATIVE_DAYS.items():
            if tuple(words[i : i + len(phrase)]) == phrase:
                return today + timedelta(days=delta)
    if parts := _calendar_date(words):
        month, day, year = parts
        return _safe_date(year, month, day) if year else _next_occurrence(today, month, day)
    return _weekday_date(words, today) or _day_of_month_date(words, today)


# --- Yes / no ---------------------------------------------------------------------------------

_YES, _NO, _UNSURE = "yes", "no", "unsure"
_NOT_AN_ANSWER = "not an answer"  # "right now", "right away": no yes in "right" there
_NEGATION = "negation"  # "don't", "not": a no on its own, and turns a following yes into a no
_WEAK_NEGATION = "weak negation"  # "can't", "won't": turns a following yes into a no only


def _phrase_table(groups: dict[str, list[str]]) -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for label, phrases in groups.items():
        for phrase in phrases:
            for variant in (phrase, phrase.replace("'", "")):  # Whisper writes "dont" too
                table[tuple(variant.split())] = label
    return table


_ANSWERS = _phrase_table(
    {
        _YES: [
            "yes", "yeah", "yea", "yep", "yup", "yes please", "sure", "sure thing", "of course",
            "correct", "that's correct", "right", "that's right", "all right", "alright", "ok",
            "okay", "absolutely", "definitely", "certainly", "exactly", "affirmative",
            "uh huh", "mm hmm", "mhm", "mmhmm", "go ahead", "go for it", "please do", "do it",
            "do that", "i do", "sounds good", "that works", "why not", "i think so", "perfect",
            "confirm", "confirmed", "no problem", "no worries", "not a problem", "good",
            "great", "fine", "cool", "excellent", "lovely", "let's do it", "let's do that",
            "let's go", "let's go ahead",
        ],
        _NO: [
            "no", "nope", "nah", "no thanks", "no thank you", "not really", "negative",
            "wrong", "that's wrong", "incorrect", "that's incorrect", "not that",
            "not that one", "cancel", "cancel that", "cancel it", "stop", "absolutely not",
            "definitely not", "certainly not", "of course not", "not at all", "no way",
            "never mind", "nevermind", "rather not", "not now",
        ],
        _UNSURE: [
            "not sure", "don't know", "do not know", "no idea", "dunno", "maybe", "perhaps",
            "i guess",
        ],
        _NOT_AN_ANSWER: ["right now", "right away", "right here", "right there"],
        _NEGATION: ["not", "don't", "do not", "i do not", "never", "please don't"],
        _WEAK_NEGATION: [
            "can't", "cannot", "won't", "wouldn't", "shouldn't", "didn't", "doesn't",
            "isn't", "is not", "wasn't", "aren't",
        ],
    }
)  # fmt: skip
_LONGEST_ANSWER = max(len(phrase) for phrase in _ANSWERS)
_NOPE = re.compile(r"\b(?:uh-uh|uhn-uh|unh-unh|nuh-uh)\b")  # before hyphens split "uh-uh"


def _answer_at(words: Sequence[str], i: int, stop: int | None = None) -> tuple[str, int] | None:
    """The longest yes/no phrase starting at ``i`` and ending by ``stop``: (label, end)."""
    stop = len(words) if stop is None else stop
    for length in range(min(_LONGEST_ANSWER, stop - i), 0, -1):
        if label := _ANSWERS.get(tuple(words[i : i + length])):
            return label, i + length
    return None


def parse_free_text(text: str, min_words: int = 3) -> str | None:
    """A free-form answer ("what happened?"): the caller's words, if there are enough of them
    to be an answer rather than a filler ("um", "yes")."""
    words = re.findall(r"[\w']+", text)
    return " ".join(text.split()) if len(words) >= min_words else None


class _Said(NamedTuple):
    """One yes/no phrase found in an answer: its label and word span (negation resolved)."""

    label: str
    start: int
    end: int


# Words callers put before or between answers ("uh, yes", "well no", "oh yeah", "and yes
# please"); Whisper also writes them for the breath before a word.
_FILLERS = frozenset(
    {"uh", "um", "umm", "uhm", "er", "erm", "ah", "oh", "hmm", "mm", "well", "so", "and", "but"}
)
# The first words decide when the answer starts within this many words (after fillers): a
# misheard first word ("Now that's right", "Let's go ahead") still leaves the answer in front.
_LEAD_WORDS = 2
# Words between an agreement and the action it agrees to: "please send it", "just do it".
_ACTION_PREFIX = frozenset({"please", "just", "then", "you", "can", "and", "go", "ahead"})
# "Shall I send it?", "I can text a link": the verbs of what the bot offers to do.
_OFFERED = re.compile(
    r"\b(?:shall|should|can|may|could) i (\w+)"
    r"|\b(?:want|like) me to (\w+)"
    r"|\bi(?:'ll| will| can) (\w+)"
)


def offered_actions(question: str) -> frozenset[str]:
    """The verbs of what a question offers to do: "Shall I send it?" -> {"send"}.

    An answer that starts with one of them ("send it", "please block it") agrees, as people
    answer offers; "go" ("Shall I go ahead?") is already a yes phrase.
    """
    found = _OFFERED.findall(_normalize(question))
    return frozenset(verb for groups in found for verb in groups if verb)


def _answers(words: Sequence[str], clause_ends: Sequence[int]) -> list[_Said]:
    """Every yes/no phrase in ``words`` in order; a phrase ends with its clause
    (``clause_ends[i]``: where the clause of word ``i`` ends), at Whisper's punctuation.

    Negation is read within a clause: "not right" and "don't do it" are no, "can't hear you"
    is no answer at all.
    """
    found: list[_Said] = []
    i = 0
    while i < len(words):
        stop = clause_ends[i]
        hit = _answer_at(words, i, stop)
        if hit is None:
            i += 1
            continue
        start, (label, i) = i, hit
        if label == _NOT_AN_ANSWER:
            continue
        if label in (_NEGATION, _WEAK_NEGATION):
            following = _answer_at(words, i, stop)
            if following is not None and following[0] in (_YES, _NO):
                label, i = _NO, following[1]
            elif label == _WEAK_NEGATION:
                continue
            else:
                label = _NO
        found.append(_Said(label, start, i))
    return found


def _content(words: Sequence[str], start: int, end: int) -> int:
    """Words in ``words[start:end]`` that are not fillers."""
    return sum(word not in _FILLERS for word in words[start:end])


def parse_yes_no(text: str, actions: frozenset[str] = frozenset()) -> bool | None:
    """True for yes, False for no, None when unclear, unsure, or both were said.

    The answer's first words decide: "Yes, the car mending in 4-5-6" is yes and "No, not
    that, it was 9 4" is no, whatever the recognizer made of the rest (it mangles what
    follows a clear yes far more often than the yes itself). Two opposite answers at once
    ("yeah, no", "No, go ahead") or a correction ("yes, wait, no") give None rather than a
    guess. ``actions`` are the verbs the question offered (``offered_actions``): an answer
    that starts with one ("send it", "please block it") agrees. When the first words are no
    answer, the whole text is read: "I think that's right" is yes, "that's not right" no,
    "I don't know" and "not sure" unclear, "no problem" yes.
    """
    normalized = _NOPE.sub(" nope ", _normalize(text))
    words: list[str] = []
    clause_ends: list[int] = []
    for clause in re.split(r"[.!?;,]", normalized):
        tokens = _TOKEN.findall(clause)
        words += tokens
        clause_ends += [len(words)] * len(tokens)
    said = _answers(words, clause_ends)
    if said and _content(words, 0, said[0].start) <= _LEAD_WORDS - 1:
        lead = said[0]
        if lead.label == _UNSURE:
            return None
        for later in said[1:]:
            if later.label in (_YES, _NO) and later.label != lead.label:
                right_after = _content(words, lead.end, later.start) == 0
                corrected = later.start > 0 and words[later.start - 1] in _CORRECTIONS
                if right_after or corrected:
                    return None
        return lead.label == _YES
    if actions and _starts_with_action(words, said, actions):
        return True
    labels = {s.label for s in said}
    if _UNSURE in labels or (_YES in labels) == (_NO in labels):
        return None
    return _YES in labels


def _starts_with_action(
    words: Sequence[str], said: Sequence[_Said], actions: frozenset[str]
) -> bool:
    """The answer starts with an offered verb: "send it", "please send it", "You block it"
    (a misheard "yeah" in front), and says no "no" or "don't" before it."""
    content = 0
    for i, word in enumerate(words):
        if word in actions:
            return not any(s.start < i for s in said)
        if word not in _FILLERS and word not in _ACTION_PREFIX:
            content += 1
            if content >= _LEAD_WORDS:
                return False
    return False


# --- Closings -------------------------------------------------------------------------------

_CLOSINGS = frozenset(
    tuple(phrase.replace("'", "").split())  # matched without apostrophes: "thats all"
    for phrase in (
        "bye", "goodbye", "good bye", "bye bye", "bye now", "that's all", "that is all",
        "that'll be all", "that will be all", "that's it", "that's it for today",
        "that's all for today",
        "that's it for now", "that's all for now", "that's all i needed", "that's everything",
        "nothing else", "nothing more", "have a good day", "have a nice day",
        "have a great day", "have a good one", "take care", "i'm all set", "all set",
        "i'm done", "we're done",
    )
)  # fmt: skip
# A closing heard with a wrong first word ("I see it for today" for "that's it for today"):
# the rest of a phrase of three words or more, one or two words into a clause.
_CLOSING_TAILS = frozenset(phrase[1:] for phrase in _CLOSINGS if len(phrase) >= 3)
_MISHEARD_WORDS = 2
_LONGEST_CLOSING = max(len(phrase) for phrase in _CLOSINGS)
# A short goodbye as Whisper hears it on a phone line: "By.", "Buy.", "Bye-bye" -> "by by".
_BYE_SOUNDS = frozenset({"by", "buy", "bi"})
_BYE_SOUND_MAX_WORDS = 4  # "okay thanks, by": a bare "by" closes only a short answer


def parse_closing(text: str) -> bool:
    """The caller is done: "no that's all, thank you, goodbye", "thanks, bye", "that's it for
    today", heard through the usual mishearings: a wrong first word ("I see it for today"),
    "By." for "Bye.".

    A closing phrase anywhere counts, since callers wrap it in thanks and fillers; a bare
    "by" or "buy" only as the last word of a short answer, where a goodbye goes.
    """
    words: list[str] = []
    for clause in re.split(r"[.!?;,]", _normalize(text)):
        tail = [w.replace("'", "") for w in _TOKEN.findall(clause.replace("-", " "))]
        for start in range(1, _MISHEARD_WORDS + 1):
            if any(tuple(tail[start : start + len(t)]) == t for t in _CLOSING_TAILS):
                return True
        words += tail
    for i in range(len(words)):
        for n in range(min(_LONGEST_CLOSING, len(words) - i), 0, -1):
            if tuple(words[i : i + n]) in _CLOSINGS:
                return True
    return bool(words) and words[-1] in _BYE_SOUNDS and len(words) <= _BYE_SOUND_MAX_WORDS


# --- Digit answers ----------------------------------------------------------------------------


def parse_digit_slot(type_name: str, text: str, length: int | None = None) -> str | None:
    """A digit answer as the dialog accepts it: the slot type's parser (``digits``,
    ``card_last_four``, ``phone``), then, when the answer's ``length`` is fixed and the parser
    found nothing of that length, ``read_digits`` with the length. None: ask again."""
    value = SLOT_TYPES[type_name](text, date.min)
    if value is not None and (length is None or len(value) == length):
        return value
    if length is None:
        return None
    digits = read_digits(text, length)
    return digits if len(digits) == length else None


# --- Registry ---------------------------------------------------------------------------------

SlotParser = Callable[[str, date], Any]
"""How the registry calls a parser: (caller text, today) -> value, or None to re-prompt."""

# Slot type names as domain packs spell them (``type:`` in a flow's slots). Parsers that
# do not need ``today`` ignore it, so the dialog calls every type the same way.
SLOT_TYPES: dict[str, SlotParser] = {
    "digits": lambda text, today: parse_digits(text),
    "card_last_four": lambda text, today: parse_card_last_four(text),
    "phone": lambda text, today: parse_phone_number(text),
    "amount": lambda text, today: parse_amount(text),
    "date": parse_date,
    "yes_no": lambda text, today: parse_yes_no(text),
    "text": lambda text, today: parse_free_text(text),
}


def parse_slot(type_name: str, text: str, today: date | None = None) -> Any:
    """Parse ``text`` as a slot of ``type_name``; None means "ask again".

    ``today`` defaults to the machine's date; pass the call's date for repeatable results.
    An unknown type name is a pack bug, not a caller error, so it raises ValueError.
    """
    parser = SLOT_TYPES.get(type_name)
    if parser is None:
        raise ValueError(f"unknown slot type {type_name!r}; known: {', '.join(SLOT_TYPES)}")
    return parser(text, today or date.today())
