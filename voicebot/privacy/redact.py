"""Finding and masking PII in what callers say, as Whisper writes it.

Callers read card numbers as digits ("4111 1111 ..."), as words ("four one one one"), in
pairs ("forty one eleven"), with "double"/"oh", with fillers, and split over pauses: every
form goes through the dialog's own number reader (``voicebot.dialog.slots.read_number``),
so a number the bot can understand is a number it can mask. Digit runs are then classified:

- with a cue before them ("security code", "pin", "zip", "social", "passport", "account
  number", "card number", "phone", "born"): that kind;
- without one: 13-19 digits passing Luhn are a card (python-stdnum's check); a possible
  phone number (Google's ``phonenumbers``) is a phone; 3-2-4 grouped digits an SSN;
  anything else of 6 digits or more an identifier ("number"). Amounts ("$1,200", "two
  hundred"), dates and short numbers (a card's last four) stay.

While the caller answers a sensitive question (``Expectation.sensitive``: a verification
answer, a pack's ``sensitive: true`` slot) every number and date they say is masked.
E-mail addresses are masked written ("jo@x.com") or spoken ("jo dot smith at gmail dot com").
A card keeps what an agent needs: ``[card ending 4567]``.

Why not Presidio: its analyzer imports spaCy at package import (3.8 s more start-up for
every command, ~200 MB of wheels: spaCy, thinc, blis), its e-mail recognizer fetches the
public suffix list from the network at first use (which fails offline), and its pattern
recognizers see written digits only, while the hard part here is the spoken forms, which
must be read into digits first. What its recognizers add beyond that is a regex and a Luhn
or SSN check, which ``stdnum`` does here.
"""

import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

import phonenumbers
from stdnum import luhn

from voicebot.dialog.slots import MONTHS, ORDINALS, REPEATS, read_number, token_spans
from voicebot.events import Expect, Expectation

log = logging.getLogger(__name__)

FAILED = "[redaction failed]"


class PII(StrEnum):
    CARD = "card"
    SECURITY_CODE = "security_code"  # CVV, PIN, passcode
    VERIFICATION = "verification"  # the answer to a verification question (ZIP)
    DATE_OF_BIRTH = "date_of_birth"
    SSN = "ssn"
    NATIONAL_ID = "national_id"  # passport, licence, tax and other ID numbers
    EMAIL = "email"
    ACCOUNT = "account"
    PHONE = "phone"
    NUMBER = "number"  # a long digit run of no known kind: an identifier all the same
    ANSWER = "answer"  # said while answering a sensitive question


_LABELS = {
    PII.CARD: "card number",
    PII.SECURITY_CODE: "security code",
    PII.VERIFICATION: "verification answer",
    PII.DATE_OF_BIRTH: "date of birth",
    PII.SSN: "SSN",
    PII.NATIONAL_ID: "ID number",
    PII.EMAIL: "email",
    PII.ACCOUNT: "account number",
    PII.PHONE: "phone number",
    PII.NUMBER: "number",
    PII.ANSWER: "redacted",
}


@dataclass(frozen=True)
class Finding:
    """One piece of PII at ``text[start:end]``; ``last_four`` is what may stay visible."""

    kind: PII
    start: int
    end: int
    last_four: str = ""

    @property
    def mask(self) -> str:
        if self.last_four:  # "[card ending 4567]": what an agent needs to tell cards apart
            return f"[{self.kind.value} ending {self.last_four}]"
        return f"[{_LABELS[self.kind]}]"


@dataclass(frozen=True)
class Redaction:
    text: str  # the masked text
    findings: tuple[Finding, ...] = ()


# --- cues ------------------------------------------------------------------------------------

# Said just before a number, these name what it is. The nearest cue wins; of two ending at
# the same word the longer ("social security number" over "number").
_CUES: dict[PII, re.Pattern[str]] = {
    kind: re.compile(rf"\b(?:{pattern})\b")
    for kind, pattern in {
        # Whisper hears "CVV" as "CBB" and "PIN" as "pen" on a phone line.
        PII.SECURITY_CODE: r"security code|cvv ?2?|cvc|csc|cid|cbb|cvb|cbv|c [vb] [vb]|"
        r"(?:pin|pen)(?: number| code)?|passcode|pass code|access code|verification code|"
        r"secret code|code on the back|(?:three|four|3|4) digit code|code",
        PII.VERIFICATION: r"zip(?: code)?|zipcode|postal code|post ?code",
        PII.SSN: r"social(?: security)?(?: number)?|ssn|s s n",
        PII.NATIONAL_ID: r"passport(?: number)?|driver'?s licen[cs]e(?: number)?|"
        r"licen[cs]e number|national insurance(?: number)?|national id|id number|"
        r"identification number|tax id|taxpayer id|itin|ein",
        PII.ACCOUNT: r"account(?: number)?|routing(?: number)?|iban|member(?: number| id)?|"
        r"policy number|customer number",
        PII.CARD: r"(?:credit |debit )?card(?: number)?",
        PII.PHONE: r"(?:phone|cell|mobile|home|work)(?: number)?|call me|reach me|text me|"
        r"number",
        PII.DATE_OF_BIRTH: r"born|birthday|date of birth|birth date|dob|d o b",
    }.items()
}
_CUE_WINDOW = 7  # words before a number searched for its cue
_ENDING = re.compile(r"\b(?:ending|ends|end|last (?:four|4))\b")  # "card ending 4567": partial

_FILLERS = frozenset({"uh", "um", "umm", "uhm", "er", "erm", "ah", "hmm", "mm"})
# After a number, these make it a quantity, not an identifier ("40 dollars", "5 days").
_UNITS = frozenset(
    {
        "dollar", "dollars", "bucks", "cents", "percent", "pm", "am", "o'clock", "minutes",
        "minute", "hours", "hour", "days", "day", "weeks", "week", "months", "month",
        "years", "year", "times", "grand", "k",
    }
)  # fmt: skip
_TLDS = frozenset(
    {"com", "net", "org", "edu", "gov", "io", "co", "us", "uk", "ca", "de", "fr", "info", "biz",
     "me", "mail", "ai", "app", "dev", "email", "online"}
)  # fmt: skip
# A written address ends in a top-level domain of letters ("jo@x.com"): "queue@127.0.0.1" is
# a host, and "sip:queue@pbx.example.com" the SIP address of a queue, not a person's mail.
_EMAIL = re.compile(r"(?<![\w.:-])(?<!sips:)(?<!sip:)[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# Identifiers the system itself makes (call and handoff ids, hashes) are not PII.
_SYSTEM_ID = re.compile(r"^(?:[0-9a-f]{12}|[0-9a-f]{32}|[0-9a-f]{64})$")
_DATE_WORDS = frozenset({"of", "the"})


class _Token(NamedTuple):
    word: str  # normalized (``slots.tokenize``)
    start: int
    end: int


@dataclass
class _Run:
    """Digits said one after another (fillers between them allowed)."""

    first: int  # token index
    last: int  # token index, inclusive
    digits: str = ""
    groups: list[int] = field(default_factory=list)  # digits per spoken or written piece
    amounts: list[bool] = field(default_factory=list)  # per piece: said as an amount
    plus: bool = False


@dataclass
class _Text:
    text: str
    tokens: list[_Token]
    runs: list[_Run]
    codes: list[tuple[int, int, int]]  # alphanumeric words: (first, last, digit count)

    @property
    def words(self) -> list[str]:
        return [t.word for t in self.tokens]


def _analyze(text: str) -> _Text:
    tokens = [_Token(*t) for t in token_spans(text)]
    words = [t.word for t in tokens]
    glued = [a.end == b.start for a, b in itertools.pairwise(tokens)]
    codes, in_code = _alphanumeric_words(text, tokens, glued)
    runs: list[_Run] = []
    current: _Run | None = None
    fillers = 0
    i = 0
    while i < len(words):
        piece = None if in_code[i] else _piece(words, i)
        if piece is None:
            if current is not None and words[i] in _FILLERS and fillers < 2:
                fillers += 1
            else:
                current = None
            i += 1
            continue
        digits, end, amount = piece
        if current is None:
            plus = words[i].startswith("+") or (i > 0 and words[i - 1] == "plus")
            current = _Run(i, end - 1, plus=plus)
            runs.append(current)
        current.digits += digits
        current.groups.append(len(digits))
        current.amounts.append(amount)
        current.last = end - 1
        fillers = 0
        i = end
    return _Text(text, tokens, runs, codes)


def _alphanumeric_words(
    text: str, tokens: list[_Token], glued: list[bool]
) -> tuple[list[tuple[int, int, int]], list[bool]]:
    """Letters and digits written as one word ("AB123456C", a hex id): one unit each."""
    codes: list[tuple[int, int, int]] = []
    in_code = [False] * len(tokens)
    i = 0
    while i < len(tokens):
        j = i
        while j < len(glued) and glued[j]:
            j += 1
        part = tokens[i : j + 1]
        has_digit = any(t.word[:1].isdigit() for t in part)
        has_letter = any(t.word[:1].isalpha() for t in part)
        if len(part) > 1 and has_digit and has_letter:
            for k in range(i, j + 1):
                in_code[k] = True
            word = text[tokens[i].start : tokens[j].end]
            if not _SYSTEM_ID.match(word):
                codes.append((i, j, sum(c.isdigit() for c in word)))
        i = j + 1
    return codes, in_code


def _piece(words: list[str], i: int) -> tuple[str, int, bool] | None:
    """Digits said at ``words[i]``: (digits, end index, said as an amount), or None."""
    word = words[i]
    if word in REPEATS and i + 1 < len(words):
        inner = _piece(words, i + 1)
        if inner is None:
            return None
        # "double five"; Whisper also writes "double 24" for "double two four".
        return inner[0][0] * REPEATS[word] + inner[0][1:], inner[1], False
    if word[:1].isdigit() or (word[:1] in "$+" and word[1:2].isdigit()):
        digits = re.sub(r"[^0-9]", "", word)
        # "$40", "1,200", "3.5", "3rd", "5k": amounts and ordinals, never identifiers.
        amount = "$" in word or "," in word or "." in word or word[-1].isalpha()
        return digits, i + 1, amount
    number = read_number(words, i)
    if number is None:
        return None
    return str(number.value), number.end, number.scaled


# --- classification --------------------------------------------------------------------------


def _cue(words: list[str], first: int) -> tuple[PII | None, bool]:
    """The kind named just before ``words[first]``, and whether an "ending" cue follows it."""
    window = " ".join(words[max(0, first - _CUE_WINDOW) : first])
    best: tuple[int, int, PII] | None = None
    for kind, pattern in _CUES.items():
        for match in pattern.finditer(window):
            key = (match.end(), -match.start(), kind)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return None, bool(_ENDING.search(window))
    return best[2], bool(_ENDING.search(window[best[0] :]))


def _classify(
    digits: str,
    groups: list[int],
    *,
    cue: PII | None,
    ending: bool = False,
    amount: bool = False,
    plus: bool = False,
) -> tuple[PII, str] | None:
    """What a digit run is: (kind, last four to keep), or None to leave it."""
    n = len(digits)
    if cue is PII.SECURITY_CODE and 2 <= n <= 8:  # 2: a digit misheard ("too" for two)
        return PII.SECURITY_CODE, ""
    if cue in (PII.VERIFICATION, PII.SSN, PII.NATIONAL_ID) and n >= 2:  # even cut short
        return cue, ""
    if cue is PII.DATE_OF_BIRTH:
        return PII.DATE_OF_BIRTH, ""
    if cue is PII.ACCOUNT and n >= 4 and not (ending and n <= 4):
        return PII.ACCOUNT, digits[-4:] if n >= 8 else ""
    if amount:
        return None
    card = _card_in(digits, groups)
    if card is not None:
        return PII.CARD, card[-4:]
    if cue is PII.CARD and n >= 12:
        return PII.CARD, digits[-4:]  # misheard (fails Luhn): still a card
    if _is_phone(digits, plus, cue):
        return PII.PHONE, ""
    if n == 9 and groups == [3, 2, 4]:
        return PII.SSN, ""
    if n >= 6 and not _date_shaped(digits, groups):
        return PII.NUMBER, ""
    return None


def _card_in(digits: str, groups: list[int]) -> str | None:
    """A card number: 13-19 digits passing Luhn, alone or followed by more (an expiry date,
    the security code), cut where the caller paused between groups."""
    if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
        return digits
    if len(digits) > 19:
        ends = [sum(groups[: k + 1]) for k in range(len(groups))]
        for end in ends:
            if 13 <= end <= 19 and luhn.is_valid(digits[:end]):
                return digits[:end]
    return None


def _is_phone(digits: str, plus: bool, cue: PII | None) -> bool:
    if cue is PII.PHONE and 7 <= len(digits) <= 15:
        return True
    if not (plus or len(digits) in (10, 11)):
        return False
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, None if plus else "US")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(number)


def _date_shaped(digits: str, groups: list[int]) -> bool:
    """2026 03 15 or 3 15 2026: a date written in digits, not an identifier."""
    parts, at = [], 0
    for size in groups:
        parts.append(int(digits[at : at + size]))
        at += size
    if len(parts) != 3:
        return False
    if groups[0] == 4:
        _, month, day = parts
    elif groups[2] in (2, 4) and groups[0] <= 2 and groups[1] <= 2:
        month, day, _ = parts
    else:
        return False
    return 1 <= month <= 12 and 1 <= day <= 31


# --- finding ---------------------------------------------------------------------------------


def _span(text: _Text, first: int, last: int) -> tuple[int, int]:
    return text.tokens[first].start, text.tokens[last].end


def _run_findings(text: _Text, expects: Expectation) -> dict[int, Finding]:
    """Findings per run index."""
    words = text.words
    out: dict[int, Finding] = {}
    for index, run in enumerate(text.runs):
        start, end = _span(text, run.first, run.last)
        if expects.sensitive:
            out[index] = Finding(_answer_kind(expects), start, end)
            continue
        cue, ending = _cue(words, run.first)
        unit = run.last + 1 < len(words) and words[run.last + 1] in _UNITS
        amount = unit or (any(run.amounts) and len(run.groups) == 1) or "$" in words[run.first]
        kind = _classify(
            run.digits, run.groups, cue=cue, ending=ending, amount=amount, plus=run.plus
        )
        if kind is not None:
            out[index] = Finding(kind[0], start, end, kind[1])
    return out


def _answer_kind(expects: Expectation) -> PII:
    return {"verification": PII.VERIFICATION, "phone": PII.PHONE}.get(
        expects.slot or "", PII.ANSWER
    )


def _date_findings(text: _Text, expects: Expectation) -> list[Finding]:
    """Dates of birth after their cue; any date said in a sensitive answer."""
    words = text.words
    out = []
    i = 0
    while i < len(words):
        start, kind = None, None
        if expects.sensitive and _is_date_word(words, i):
            start, kind = i, _answer_kind(expects)
        elif (cue_end := _phrase_end(_CUES[PII.DATE_OF_BIRTH], words, i)) is not None:
            after = range(cue_end, min(cue_end + 4, len(words)))
            start = next((k for k in after if _is_date_word(words, k)), None)
            kind = PII.DATE_OF_BIRTH
        if start is None or kind is None:
            i += 1
            continue
        end = start
        while end + 1 < len(words) and (
            _is_date_word(words, end + 1) or words[end + 1] in _DATE_WORDS | _FILLERS
        ):
            end += 1
        while words[end] in _DATE_WORDS | _FILLERS:
            end -= 1
        out.append(Finding(kind, *_span(text, start, end)))
        i = end + 1
    return out


def _phrase_end(pattern: re.Pattern[str], words: list[str], i: int) -> int | None:
    """Where a cue phrase of up to three words starting at ``words[i]`` ends, or None."""
    for length in (3, 2, 1):
        if i + length <= len(words) and pattern.fullmatch(" ".join(words[i : i + length])):
            return i + length
    return None


def _is_date_word(words: list[str], i: int) -> bool:
    """A month, day or year word: "march", "3rd", "fifteenth", "nineteen", "1985"."""
    word = words[i]
    if word in ("may", "march"):  # "may I", "march on": a month only before a number
        return i + 1 < len(words) and _is_number_word(words, i + 1)
    return word in MONTHS or _is_number_word(words, i)


def _is_number_word(words: list[str], i: int) -> bool:
    word = words[i]
    return (
        word[:1].isdigit()
        or word in ORDINALS
        or (word not in ("a", "an") and read_number(words, i) is not None)
    )


_EMAIL_CUE = re.compile(r"\b(?:e ?mail(?: address)?|email me|mail me)\b")
_EMAIL_LEAD = frozenset({"is", "at", "it's", "its", "to", "uh", "um"})


def _email_findings(text: _Text) -> list[Finding]:
    out = [Finding(PII.EMAIL, m.start(), m.end()) for m in _EMAIL.finditer(text.text)]
    out += _cued_email(text)
    words = text.words
    for k, word in enumerate(words):
        if word != "at" or k == 0:
            continue
        end = _domain_end(text, k + 1)
        if end is None:
            continue
        start = _local_start(text, k - 1)
        out.append(Finding(PII.EMAIL, *_span(text, start, end)))
    return out


def _cued_email(text: _Text) -> list[Finding]:
    """After "my email is": up to a domain ("yahoo.com", "gmail dot com"), however Whisper
    mangled the rest ("john.smithit. Yahoo.com" for "john dot smith at yahoo dot com")."""
    words = text.words
    out = []
    for k in range(len(words)):
        cue = _phrase_end(_EMAIL_CUE, words, k)
        if cue is None:
            continue
        start = cue
        while start < len(words) and words[start] in _EMAIL_LEAD:
            start += 1
        ends = [
            j
            for j in range(start + 1, min(start + 12, len(words)))
            if words[j] in _TLDS and (_joined(text, j - 1) == j or words[j - 1] == "dot")
        ]
        if start < len(words) and ends:
            out.append(Finding(PII.EMAIL, *_span(text, start, ends[0])))
    return out


_SEPARATORS = frozenset({"dot", "period", "underscore", "dash", "hyphen", "plus"})


def _joined(text: _Text, i: int) -> int | None:
    """Index of the word joined to ``tokens[i]`` by "dot"/"." and the like, or None."""
    tokens = text.tokens
    if i + 1 < len(tokens) and text.text[tokens[i].end : tokens[i + 1].start] in (
        ".", "_", "-", "+", "",
    ):  # fmt: skip
        return i + 1
    if i + 2 < len(tokens) and tokens[i + 1].word in _SEPARATORS:
        return i + 2
    return None


def _domain_end(text: _Text, i: int) -> int | None:
    """ "gmail dot com", "gmail.com", "mail dot example dot co dot uk": the last token."""
    if i >= len(text.tokens) or not text.tokens[i].word.isalnum():
        return None
    parts = [i]
    while (nxt := _joined(text, parts[-1])) is not None and text.tokens[nxt].word.isalnum():
        parts.append(nxt)
    ends = [k for k in parts[1:] if text.tokens[k].word in _TLDS]
    return ends[-1] if ends else None


def _local_start(text: _Text, i: int) -> int:
    """Back from the word before "at" over "john dot smith", "j o h n", "john.smith42"."""
    tokens = text.tokens
    start = i
    while start > 0:
        before = start - 1
        if _joined(text, before) == start:
            start = before
        elif before > 0 and tokens[before].word in _SEPARATORS:
            start = before - 1
        elif len(tokens[before].word) == 1 and len(tokens[start].word) == 1:
            start = before  # spelled out: "j o h n"
        else:
            break
    return start


def _merge(findings: list[Finding]) -> tuple[Finding, ...]:
    """Overlapping findings become one, of the first kind found at that place."""
    merged: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = replace(last, end=max(last.end, finding.end))
        else:
            merged.append(finding)
    return tuple(merged)


def _apply(text: str, findings: tuple[Finding, ...]) -> str:
    out, at = [], 0
    for finding in findings:
        out += [text[at : finding.start], finding.mask]
        at = finding.end
    out.append(text[at:])
    return "".join(out)


def _find(text: _Text, expects: Expectation) -> tuple[dict[int, Finding], list[Finding]]:
    """(findings per digit run, every other finding)."""
    if expects.sensitive and expects.kind is Expect.TEXT and text.text.strip():
        whole = Finding(_answer_kind(expects), 0, len(text.text))
        return {}, [whole]
    others = _email_findings(text) + _date_findings(text, expects)
    for first, last, digit_count in text.codes:
        if digit_count >= 6 or expects.sensitive:
            kind = _answer_kind(expects) if expects.sensitive else PII.NATIONAL_ID
            others.append(Finding(kind, *_span(text, first, last)))
    return _run_findings(text, expects), others


def redact(text: str, expects: Expectation | None = None) -> Redaction:
    """Mask the PII of one text (no memory of earlier turns: see ``CallRedactor``)."""
    analyzed = _analyze(text)
    runs, others = _find(analyzed, expects or Expectation())
    findings = _merge([*runs.values(), *others])
    return Redaction(_apply(text, findings), findings)


# Could this text hold PII at all? Digits, number words, "@", " at " (e-mail), a birth cue.
_MAYBE = re.compile(
    r"[0-9@]|\b(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
    r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|double|triple|at|born|"
    r"birth|birthday|dob)\b",
    re.IGNORECASE,
)
_CLEAN: dict[str, None] = {}  # texts found to hold nothing: stores mask the same turn often
_CLEAN_MAX = 20_000


def redact_text(text: str) -> str:
    """``redact(text).text``; on any failure in redaction, ``FAILED`` (never the text)."""
    if text in _CLEAN:
        return text
    masked = guarded(lambda: redact(text).text) if _MAYBE.search(text) else text
    if masked == text:
        if len(_CLEAN) >= _CLEAN_MAX:
            _CLEAN.clear()
        _CLEAN[text] = None
    return masked


def guarded(mask: Callable[[], str]) -> str:
    """Run a redaction; a bug in it must never let clear text through: ``FAILED`` instead."""
    try:
        return mask()
    except Exception as exc:
        # The exception only: its message could quote the text.
        log.error("redaction failed (%s); the text is withheld", type(exc).__name__)
        return FAILED


# --- across turns ----------------------------------------------------------------------------


@dataclass
class _Tail:
    """The digits a turn ended with, in case the next turn goes on with them."""

    text: str
    findings: tuple[Finding, ...]
    span: tuple[int, int]
    digits: str
    groups: list[int]
    cue: PII | None
    masked: bool
    plus: bool
    expects: Expectation


class CallRedactor:
    """Redacts one call's caller turns in order.

    A number read over a pause ends up in two turns ("4111 1111" ... "1111 1111"): a turn
    that starts with digits right where the previous turn's digits ended continues them, if
    the caller is answering the same question. The two together are classified, and the
    earlier turn is masked again when only the whole shows what it was (``redact``
    returns its new text). Only that trailing run is kept, and only until the next turn.
    """

    def __init__(self) -> None:
        self._tail: _Tail | None = None

    def redact(
        self, text: str, expects: Expectation | None = None
    ) -> tuple[Redaction, Redaction | None]:
        """(this turn's redaction, the previous turn's new one if it changed)."""
        expects = expects or Expectation()
        analyzed = _analyze(text)
        runs, others = _find(analyzed, expects)
        words = analyzed.words
        tail, self._tail = self._tail, None
        lead = analyzed.runs[0] if analyzed.runs else None
        if lead is not None and not _only_fillers(words[: lead.first]):
            lead = None
        previous: Redaction | None = None
        combined: tuple[str, list[int]] | None = None
        # A sensitive answer is masked whole anyway; otherwise the pieces are read as one.
        if tail and lead and tail.expects == expects and not expects.sensitive:
            combined = (tail.digits + lead.digits, tail.groups + lead.groups)
            found = _classify(*combined, cue=tail.cue, plus=tail.plus)
            if found is not None:
                runs[0] = Finding(found[0], *_span(analyzed, lead.first, lead.last), found[1])
                if not tail.masked:
                    start, end = tail.span
                    redone = _merge([*tail.findings, Finding(found[0], start, end)])
                    previous = Redaction(_apply(tail.text, redone), redone)
        findings = _merge([*runs.values(), *others])
        last_index = len(analyzed.runs) - 1
        if last_index >= 0 and _only_fillers(words[analyzed.runs[last_index].last + 1 :]):
            run = analyzed.runs[last_index]
            go_on = combined is not None and run is lead
            cue = tail.cue if go_on and tail is not None else _cue(words, run.first)[0]
            self._tail = _Tail(
                text=text,
                findings=findings,
                span=_span(analyzed, run.first, run.last),
                digits=combined[0] if go_on and combined else run.digits,
                groups=combined[1] if go_on and combined else list(run.groups),
                cue=cue,
                masked=last_index in runs,
                plus=tail.plus if go_on and tail is not None else run.plus,
                expects=expects,
            )
        return Redaction(_apply(text, findings), findings), previous


def _only_fillers(words: list[str]) -> bool:
    return all(w in _FILLERS for w in words)


# --- structures ------------------------------------------------------------------------------

# Fields that identify a call and are no PII of the caller's words: the caller-ID field is
# the call's own identity (kept; erasure removes it), the others are ours or timestamps.
KEEP_KEYS = frozenset(
    {
        "call_id", "handoff_id", "caller_id", "customer_id", "started_at", "created_at",
        "recording", "caller_audio", "pack", "asr_model", "tts_voice", "at", "url",
        "transfer",  # the outcome of our own transfer signalling: queue address, SIP status
        "callback_number",  # the number the caller asked to be called back on (like caller_id)
        "telephony",  # the carrier's ids of the call (Twilio's CallSid, AccountSid)
    }
)  # fmt: skip


def redact_json(value: Any, keep: frozenset[str] = KEEP_KEYS) -> Any:
    """A copy of a JSON-like value with every string masked, except under ``keep`` keys:
    the last line of defence at every store (database, spool, transcript files), which
    holds whatever a turn missed when it was recorded."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: v if k in keep else redact_json(v, keep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v, keep) for v in value]
    return value


# --- logs ------------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Masks PII in a log record's message and traceback (formatted here, once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record._redacted = True
        return True


_installed = False


def install_log_redaction() -> None:
    """Redact every log record of the process as it is made, whichever handler writes it
    (ours, uvicorn's, a library's): a record factory runs the ``RedactingFilter``."""
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()
    redacting = RedactingFilter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
