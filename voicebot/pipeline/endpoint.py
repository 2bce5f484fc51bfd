"""Dialog-aware endpointing and backchannels: turn-taking that knows what it waits for.

A fixed silence timeout is either too long for "yes" or too short for a ZIP code read in
two breaths. With every reply the dialog says what it expects (``events.Expectation``); at
the first pause of the caller's turn the speculative transcript (which the session computes
anyway) is checked against it:

- *complete* (a clear yes/no, all N digits, a date): the turn ends after ``complete_ms``;
- *incomplete* (3 of 5 ZIP digits, "my card number is four five", a trailing "and"): it
  waits up to ``incomplete_ms``, so the caller is not cut off inside a digit string;
- *unsure* (nothing decides it, a free request): the plain ``silence_timeout_ms``, or, with
  an audio end-of-turn model (``EndpointerConfig.turn_model``), what the model hears: a
  sentence cut mid-way waits ``incomplete_ms``, a finished one ``complete_ms``.

Until the verdict is in, the pause waits for it (up to ``incomplete_ms``): the final
transcript is the speculation anyway, so waiting costs nothing, and a caller who resumes
meanwhile stays in the same turn. Each decision is kept on the turn (``EndpointDecision``).

While the bot talks, caller speech pauses it at once; whether it is an interruption is
``interrupts``: words that are not a backchannel ("mm-hm", "okay", "right") or sustained
speech. Plain functions over text, so the session and ``voicebot eval turns`` share them.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from voicebot.dialog.slots import parse_date, parse_digits, parse_yes_no, tokenize
from voicebot.events import Expect, Expectation, SpeechEnded, Transcript
from voicebot.vad.endpointer import Endpointer

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    COMPLETE = "complete"  # all that was asked for is there: a short pause ends the turn
    INCOMPLETE = "incomplete"  # more is coming: wait up to the longest pause
    UNSURE = "unsure"  # nothing decides it: the plain silence timeout


@dataclass(frozen=True)
class Assessment:
    """A verdict and what it rests on, in words that hold none of the caller's own
    ("3 of 5 digits", "trailing 'and'"): it is stored on the turn, unmasked."""

    verdict: Verdict
    seen: str


@dataclass(frozen=True)
class EndpointDecision:
    """How one caller turn was ended, as recorded on its ``Turn.endpoint``.

    ``verdict`` is None when the turn ended before any speculative transcript was in (the
    caller spoke on past the longest wait, or endpointing is fixed); ``waited_ms`` is the
    silence from the last voiced frame to the end of the turn.
    """

    expected: str  # "digits:5", "yes_no", "request"
    verdict: Verdict | None
    seen: str
    timeout_ms: int
    waited_ms: float
    earlier: tuple[Assessment, ...] = ()  # verdicts at the pauses the caller spoke on after


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words after which nobody has finished: conjunctions, articles, prepositions, fillers.
_TRAILING = _words(
    "and or but so because um uh er erm hmm the a an my your our is are was to of for "
    "with from at in on by like plus then if that than it's its"
)
# Words that say "go on" without taking the turn.
_BACKCHANNEL = _words(
    "mm mhm hmm hm mm-hmm uh-huh huh uh um ah oh okay ok yeah yep yes yup right sure "
    "alright all got it i see cool great fine gotcha"
)
_BACKCHANNEL_MAX_WORDS = 4
_SHORTEST_NUMBER = 4  # digits asked for are never fewer: PINs, card endings, ZIP codes
_NUMBER_CUES = frozenset({"is", "number", "code", "zip", "pin", "digits"})


def describe(expects: Expectation) -> str:
    """``expected`` as recorded: the kind, and the digit count when one is asked for."""
    return f"{expects.kind}:{expects.digits}" if expects.digits else str(expects.kind)


def _is_digit(word: str) -> bool:
    digits = parse_digits(word)
    return digits is not None and len(digits) == 1


def _trailing_digits(words: list[str]) -> int:
    """How many single digits the words end with ("... is four five" -> 2)."""
    count = 0
    for word in reversed(words):
        if not _is_digit(word):
            break
        count += 1
    return count


def _count_digits(words: list[str], wanted: int, what: str) -> Assessment:
    got = len(parse_digits(" ".join(words)) or "")
    if got == 0:
        return Assessment(Verdict.UNSURE, f"no digits for {what}")
    verdict = Verdict.COMPLETE if got >= wanted else Verdict.INCOMPLETE
    return Assessment(verdict, f"{got} of {wanted} digits")


def _digits(words: list[str], expects: Expectation) -> Assessment:
    if expects.digits:
        return _count_digits(words, expects.digits, "digits")
    return _open(words, expects)


def _phone(words: list[str], expects: Expectation) -> Assessment:
    return _count_digits(words, expects.digits or 10, "a phone number")


def _yes_no(words: list[str], expects: Expectation) -> Assessment:
    if parse_yes_no(" ".join(words)) is None:
        return _open(words, expects)
    return Assessment(Verdict.COMPLETE, "a clear yes/no")


def _amount(words: list[str], expects: Expectation) -> Assessment:
    # "two hundred" may go on "and fifty": only a said currency closes an amount.
    if words[-1] in ("dollars", "dollar", "cents", "bucks") or words[-1].startswith("$"):
        return Assessment(Verdict.COMPLETE, "an amount with its currency")
    return _open(words, expects)


def _date(words: list[str], expects: Expectation) -> Assessment:
    if parse_date(" ".join(words), date.today()) is not None:
        return Assessment(Verdict.COMPLETE, "a date")
    return _open(words, expects)


def _open(words: list[str], expects: Expectation) -> Assessment:
    """Any answer: a number being read out is not finished; else nothing decides it.

    Without an expected length, fewer than ``_SHORTEST_NUMBER`` trailing digits are a
    number being read ("my card number is four five"); more may be all of it.
    """
    run = _trailing_digits(words)
    if 2 <= run < _SHORTEST_NUMBER or (run == 1 and len(words) > 1 and words[-2] in _NUMBER_CUES):
        return Assessment(Verdict.INCOMPLETE, f"inside a digit string ({run} digits)")
    return Assessment(Verdict.UNSURE, f"no rule for {expects.kind}")


_RULES: dict[str, Callable[[list[str], Expectation], Assessment]] = {
    Expect.REQUEST: _open,
    Expect.TEXT: _open,
    Expect.YES_NO: _yes_no,
    Expect.DIGITS: _digits,
    Expect.PHONE: _phone,
    Expect.AMOUNT: _amount,
    Expect.DATE: _date,
}


def knows(expects: Expectation) -> bool:
    """Whether the endpointer has a rule for this kind of answer."""
    return expects.kind in _RULES


def assess(text: str, expects: Expectation) -> Assessment:
    """Is ``text`` (heard so far) a finished answer to what ``expects`` asks for?"""
    rule = _RULES.get(expects.kind)
    if rule is None:
        return Assessment(Verdict.UNSURE, f"unknown expectation {expects.kind!r}")
    words = tokenize(text)
    if not words:
        return Assessment(Verdict.UNSURE, "nothing heard")
    if words[-1] in _TRAILING:
        return Assessment(Verdict.INCOMPLETE, f"trailing {words[-1]!r}")
    return rule(words, expects)


def is_backchannel(text: str) -> bool:
    """True for "mm-hm", "okay", "yeah right": a listener's signal, not a turn."""
    words = tokenize(text)
    return 0 < len(words) <= _BACKCHANNEL_MAX_WORDS and all(w in _BACKCHANNEL for w in words)


def interrupts(voiced_ms: float, heard: str | None, sustained_ms: int) -> bool:
    """Whether caller speech over the bot is a real interruption: sustained speech, or
    words (``heard``, once a transcript is in) that are not a backchannel."""
    if voiced_ms >= sustained_ms:
        return True
    return heard is not None and bool(tokenize(heard)) and not is_backchannel(heard)


_OPEN = frozenset({Expect.REQUEST, Expect.TEXT})  # answers only the audio model can judge


class TurnEnd:
    """Applies dialog-aware endpointing to one call's ``Endpointer``.

    The session (and the turn eval) calls ``paused`` at each ``SpeechPaused``, ``heard``
    when that pause's speculative transcript is ready, ``heard_audio`` with the turn
    model's verdict when ``wants_audio``, and ``decision`` when the turn ends.
    """

    def __init__(self, endpointer: Endpointer) -> None:
        self._endpointer = endpointer
        self._config = endpointer.config
        self._expects = Expectation()
        self._assessment: Assessment | None = None  # the verdict in force in this pause
        self._text: Assessment | None = None  # the transcript's, while the model's is due
        self._p_complete: float | None = None
        self._earlier: list[Assessment] = []
        self._timeout_ms = self._config.silence_timeout_ms

    @property
    def wants_audio(self) -> bool:
        """Whether this pause's verdict also waits on the audio turn model (an open answer
        with a model configured): the session runs it beside the speculation."""
        config = self._config
        return config.dialog_aware and config.turn_model is not None and self._expects.kind in _OPEN

    def paused(self, expects: Expectation) -> None:
        """A pause began: wait for the speculative transcript's verdict (up to the longest
        wait), unless endpointing is fixed or the expectation is one it has no rule for."""
        if self._assessment is not None:
            self._earlier.append(self._assessment)  # the caller spoke on after that one
        self._expects, self._assessment, self._text, self._p_complete = expects, None, None, None
        self._timeout_ms = self._config.silence_timeout_ms
        if not self._config.dialog_aware:
            return
        if not knows(expects):
            log.warning("expectation %r unknown to the endpointer: plain timeout", expects.kind)
            return
        self._timeout_ms = self._config.incomplete_ms
        self._endpointer.hold(self._timeout_ms)

    def heard(self, transcript: Transcript) -> Assessment | None:
        """The pause's speculative transcript is in: end the turn after the pause its
        verdict calls for (at once, if that much silence has passed)."""
        if not self._config.dialog_aware or not knows(self._expects):
            return None
        if transcript.dropped:
            assessment = Assessment(Verdict.UNSURE, f"transcript dropped ({transcript.dropped})")
        else:
            assessment = assess(transcript.text, self._expects)
        if assessment.verdict is Verdict.UNSURE and self.wants_audio:
            self._text = assessment
            if self._p_complete is None:
                return assessment  # the turn model's verdict is due: keep the long wait
            assessment = self._with_model(assessment, self._p_complete)
        return self._apply(assessment)

    def heard_audio(self, p_complete: float) -> Assessment | None:
        """The turn model's probability for this pause: it decides an unsure transcript
        (now, or when the transcript comes in)."""
        if not self.wants_audio:
            return None
        self._p_complete = p_complete
        if self._text is None or self._assessment is not None:
            return None
        return self._apply(self._with_model(self._text, p_complete))

    def _with_model(self, text: Assessment, p_complete: float) -> Assessment:
        if p_complete >= self._config.turn_threshold:
            return Assessment(Verdict.COMPLETE, f"{text.seen}; sounds complete ({p_complete:.2f})")
        return Assessment(Verdict.INCOMPLETE, f"{text.seen}; sounds unfinished ({p_complete:.2f})")

    def _apply(self, assessment: Assessment) -> Assessment:
        self._assessment = assessment
        self._timeout_ms = {
            Verdict.COMPLETE: self._config.complete_ms,
            Verdict.INCOMPLETE: self._config.incomplete_ms,
            Verdict.UNSURE: self._config.silence_timeout_ms,
        }[assessment.verdict]
        self._endpointer.hold(self._timeout_ms)
        return assessment

    def decision(self, ended: SpeechEnded, now: float) -> EndpointDecision:
        """The record of how the turn that just ended was ended."""
        found = None if ended.cut else self._assessment
        if ended.cut:
            seen = f"cut at the maximum turn length ({self._config.max_turn_ms} ms)"
        elif found is not None:
            seen = found.seen
        elif self._text is not None:
            seen = f"{self._text.seen}; no turn model verdict within {self._timeout_ms} ms"
        elif not self._config.dialog_aware:
            seen = "fixed timeout"
        elif not knows(self._expects):
            seen = f"unknown expectation {self._expects.kind!r}: plain timeout"
        else:
            seen = f"no transcript within {self._timeout_ms} ms"
        decision = EndpointDecision(
            expected=describe(self._expects),
            verdict=found.verdict if found is not None else None,
            seen=seen,
            timeout_ms=self._timeout_ms,
            waited_ms=round((now - ended.end) * 1000, 1),
            earlier=tuple(self._earlier),
        )
        self._assessment, self._text, self._earlier = None, None, []
        return decision
