"""Slot values from spoken text, as Whisper writes it on a phone call.

Callers say numbers every way at once: "4567", "four five six seven", "forty five sixty
seven", "double two", "oh" for zero, "two hundred and fifty dollars", "$1,200". Each parser
returns None when it finds nothing valid, which the dialog turns into a re-prompt.
All parsers share one tokenizer and one number-word reader.
"""

import calendar
import re
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

_MAX_CHARS = 500  # a slot answer is short; longer text is cut (and cannot hang a parser)

UNITS = {
    "zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
REPEATS = {"double": 2, "triple": 3}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}

_YES = ["yes", "yeah", "yep", "yup", "sure", "correct", "right", "ok", "okay", "absolutely",
        "definitely", "affirmative", "uh huh", "mm hmm", "go ahead", "please do", "do it",
        "that's right", "that is right", "of course"]  # fmt: skip
_NO = ["no", "nope", "nah", "don't", "do not", "not really", "negative", "wrong",
       "that's wrong", "incorrect", "not that", "cancel that"]  # fmt: skip


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers; hyphens and punctuation separate, "1,200.50" stays one."""
    text = text[:_MAX_CHARS].lower().replace("’", "'")
    return re.findall(r"\$?\d[\d,]*(?:\.\d+)?|[a-z]+(?:'[a-z]+)?", text.replace("-", " "))


def _word_value(word: str) -> int | None:
    if word in UNITS:
        return UNITS[word]
    return TENS.get(word)


def read_number(words: list[str], start: int) -> tuple[int, int] | None:
    """The cardinal number spoken from ``words[start]`` on ("two hundred and fifty",
    "twenty five", "a thousand"): (value, words used), or None if none starts there."""
    total, current, used, seen = 0, 0, 0, False
    i = start
    while i < len(words):
        word = words[i]
        if word == "a" and i + 1 < len(words) and words[i + 1] in SCALES and not seen:
            current, seen = 1, True
        elif word == "and" and seen and i + 1 < len(words) and _word_value(words[i + 1]):
            pass
        elif word in TENS:
            if seen and current % 100 != 0:
                break  # "twenty thirty", "two fifty": a new number starts
            current += TENS[word]
            seen = True
        elif word in UNITS and word not in ("o",):
            if seen and current % 10 != 0:
                break  # "five six" is two numbers
            if seen and current % 100 >= 10 and UNITS[word] >= 10:
                break
            current += UNITS[word]
            seen = True
        elif word in SCALES and seen:
            scale = SCALES[word]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0
        else:
            break
        i += 1
        used = i - start
    if not seen:
        return None
    return total + current, used


def parse_digits(text: str) -> str | None:
    """The digit string a caller spoke: "four five six seven", "double two", "45 67",
    "forty five sixty seven" (pairs, as card endings are read)."""
    words = tokens(text)
    digits: list[str] = []
    repeat = 1
    i = 0
    while i < len(words):
        word = words[i]
        if word in REPEATS:
            repeat = REPEATS[word]
        elif word.lstrip("$").replace(",", "").isdigit():
            digits.append(word.lstrip("$").replace(",", "") * repeat)
            repeat = 1
        elif word in UNITS and UNITS[word] < 10:
            digits.append(str(UNITS[word]) * repeat)
            repeat = 1
        elif word in TENS:
            value = TENS[word]
            if i + 1 < len(words) and words[i + 1] in UNITS and UNITS[words[i + 1]] < 10:
                value += UNITS[words[i + 1]]
                i += 1
            digits.append(str(value))
            repeat = 1
        elif word in UNITS:  # ten .. nineteen
            digits.append(str(UNITS[word]))
        i += 1
    return "".join(digits) or None


def parse_card_last_four(text: str) -> str | None:
    """Exactly four digits, or the last four of a longer number said as "ending in ..."."""
    digits = parse_digits(text)
    if digits is None:
        return None
    if len(digits) == 4:
        return digits
    if len(digits) > 4 and re.search(r"\bend(s|ing)?\b|\blast\b", text.lower()):
        return digits[-4:]
    return None


def parse_phone_number(text: str) -> str | None:
    """10 to 15 digits; a spoken or written leading plus is kept."""
    digits = parse_digits(text)
    if digits is None or not 10 <= len(digits) <= 15:
        return None
    plus = text.strip().startswith("+") or bool(re.match(r"\s*plus\b", text.lower()))
    return f"+{digits}" if plus else digits


def parse_amount(text: str) -> Decimal | None:
    """Money: "$1,200", "1,200.50", "two hundred and fifty dollars", "two fifty", "a hundred
    bucks", "twelve dollars and fifty cents", "fifty cents"."""
    words = tokens(text)
    for word in words:
        if word[0] == "$" or word[0].isdigit():
            try:
                amount = Decimal(word.lstrip("$").replace(",", ""))
            except InvalidOperation:
                continue
            return amount if amount > 0 else None
    dollars: int | None = None
    cents = 0
    i = 0
    while i < len(words):
        found = read_number(words, i)
        if found is None:
            i += 1
            continue
        value, used = found
        after = words[i + used] if i + used < len(words) else ""
        if after in ("cent", "cents"):
            cents = value
        elif dollars is None:
            dollars = value
            # "two fifty" is read like a price tag: 250.
            follow = read_number(words, i + used)
            if follow and 0 < value < 100 and 10 <= follow[0] < 100:
                dollars = value * 100 + follow[0]
                used += follow[1]
        i += used
    if dollars is None and not cents:
        return None
    amount = Decimal(dollars or 0) + Decimal(cents) / 100
    return amount if amount > 0 else None


def parse_date(text: str, today: date | None = None) -> date | None:
    """Relative and calendar dates; invalid ones ("february 30th") are None."""
    today = today or date.today()
    words = tokens(text)
    joined = " ".join(words)
    if m := re.search(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"\b(\d{1,2})/(\d{1,2})\b", text):
        return _next_occurrence(today, int(m[1]), int(m[2]))
    for word, delta in (("today", 0), ("tomorrow", 1), ("yesterday", -1)):
        if word in words:
            return today + timedelta(days=delta)
    if m := re.search(r"\bin (\w+) (day|days|week|weeks)\b", joined):
        count = read_number([m[1]], 0)
        n = int(m[1]) if m[1].isdigit() else (count[0] if count else 1 if m[1] == "a" else None)
        if n is not None:
            return today + timedelta(days=n * (7 if m[2].startswith("week") else 1))
    for i, word in enumerate(words):
        if word in WEEKDAYS:
            ahead = (WEEKDAYS[word] - today.weekday()) % 7
            previous = words[i - 1] if i else ""
            if previous == "last":
                return today - timedelta(days=(today.weekday() - WEEKDAYS[word]) % 7 or 7)
            if previous == "next" and ahead == 0:
                ahead = 7
            return today + timedelta(days=ahead or 7)
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    day = _day_of_month(words)
    if day is None:
        return None
    if month is not None:
        return _next_occurrence(today, month, day)
    candidate = _safe_date(today.year, today.month, day)
    if candidate is not None and candidate >= today:
        return candidate
    next_month = today.month % 12 + 1
    return _safe_date(today.year + (today.month == 12), next_month, day)


def _day_of_month(words: list[str]) -> int | None:
    for i, word in enumerate(words):
        if m := re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?", word):
            return int(m[1])
        if word in ORDINALS:
            day = ORDINALS[word]
            if i and words[i - 1] in ("twenty", "thirty"):
                day += TENS[words[i - 1]]
            return day
    return None


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _next_occurrence(today: date, month: int, day: int) -> date | None:
    this_year = _safe_date(today.year, month, day)
    if this_year is None:
        return None
    return this_year if this_year >= today else _safe_date(today.year + 1, month, day)


def parse_yes_no(text: str) -> bool | None:
    """True for yes, False for no, None when unclear (or both were said)."""
    joined = f" {' '.join(tokens(text))} "
    yes = any(f" {p} " in joined for p in _YES)
    no = any(f" {p} " in joined for p in _NO)
    if yes == no:
        return None
    return yes


SLOT_TYPES: dict[str, Callable[..., Any]] = {
    "digits": lambda text, today=None: parse_digits(text),
    "card_last_four": lambda text, today=None: parse_card_last_four(text),
    "phone": lambda text, today=None: parse_phone_number(text),
    "amount": lambda text, today=None: parse_amount(text),
    "date": lambda text, today=None: parse_date(text, today),
    "yes_no": lambda text, today=None: parse_yes_no(text),
}


def parse_slot(type_name: str, text: str, today: date | None = None) -> Any:
    """Parse ``text`` as a slot of ``type_name``; None means "ask again"."""
    if type_name not in SLOT_TYPES:
        raise ValueError(f"unknown slot type {type_name!r}; known: {', '.join(SLOT_TYPES)}")
    return SLOT_TYPES[type_name](text, today=today)
