"""How every backend decodes a caller turn: the prompt a context asks for, the token budget.

Whisper conditions on "previous text" (the tokens after ``<|startofprev|>``): a prompt written
the way the answer should come out makes that style likelier. A digit question gets digits
written as digits, one by one; any other turn gets the pack's vocabulary, so "Northwind" is
not heard as "north wind". faster-whisper's ``initial_prompt`` and ``hotwords`` both put their
text in that one place (for a single 30 s window they are the same decode), so a context
yields one prompt text, and each backend places it there. Measured in docs/benchmarks.md
("Digits and recognizer biasing").

The prompt can be copied back on audio the model cannot make out; ``echoes_prompt`` lets the
guards drop such a copy instead of answering it as the caller's words.
"""

import math
import re
from collections.abc import Callable
from typing import NamedTuple, TypeGuard

from voicebot.asr.base import ASRContext
from voicebot.dialog.slots import (  # the dialog's rules for reading numbers
    REPEATS,
    TEENS,
    TENS,
    UNITS,
    ZERO_WORDS,
    parse_phone_number,
    read_digits,
)
from voicebot.events import Expect, Expectation

# Whisper's prompt holds up to 223 tokens; the vocabulary is cut to stay well inside that
# (and a long prompt slows every step of the decoder).
MAX_PROMPT_CHARS = 400
# Digits read one by one, as a caller reads a ZIP code or a card: no example of a real answer
# (a copy of it must never verify anybody), every digit once.
DIGIT_PROMPT = "0 1 2 3 4 5 6 7 8 9."
# The same digits as words, "oh" among them: under it Whisper writes what it hears word by
# word, so an "oh" stays an "oh" (under DIGIT_PROMPT "one oh oh oh one" comes out "1 1 1"),
# while pairs and "double" come out best under DIGIT_PROMPT. A digit turn is decoded under
# both and the two beams are pooled (faster_whisper.FasterWhisperASR; measured in
# docs/benchmarks.md, "Digits: pooled n-best").
DIGIT_WORD_PROMPT = "one two three four five six seven eight nine zero oh."
# The words a digit answer is made of, for a decode that may write nothing else (the last
# resort of a digit turn, FasterWhisperASR): the dialog's number words ("oh", repeats, and
# the numbers callers read in pairs, "forty five sixty seven") up to "hundred".
DIGIT_VOCABULARY = frozenset([*ZERO_WORDS, *UNITS, *TEENS, *TENS, "hundred", *REPEATS])
# Beam width, and alternatives read per prompt, for a turn that must be a digit string of a
# known form: the five-best holds the right ZIP or last four where the greedy decode splits
# or joins digits (measured in docs/benchmarks.md, "Digits: pooled n-best").
DIGIT_HYPOTHESES = 5
DIGIT_PROMPTS = (DIGIT_PROMPT, DIGIT_WORD_PROMPT)
# Greedy decoding stops at this many tokens per second of audio (plus a margin): fast speech is
# under 6, so only a repetition loop reaches it, and it must not cost the call 224 steps.
TOKENS_PER_S = 12
TOKEN_MARGIN = 16
MAX_NEW_TOKENS = 220  # with the longest prompt (228 tokens), Whisper's 448-token context is full


class Hypothesis(NamedTuple):
    """One decoded reading of a turn, as every backend scores it."""

    text: str
    avg_logprob: float  # faster-whisper's: the end-of-text token counted in the length
    no_speech_prob: float
    prompt: str


def best_fitting(
    heard: list[Hypothesis], context: ASRContext, last_resort: Callable[[], list[Hypothesis]]
) -> Hypothesis:
    """The likeliest of the pooled n-best ``heard`` (the beams under each of DIGIT_PROMPTS)
    that reads as the expected answer; the likeliest of the first prompt's if none does.
    A beam keeps "4 5 6 7" beside a greedy "4567 ..." or "45, 67", and the word prompt keeps
    the "oh"s the digit prompt drops: the format the question asks for decides between
    near-equals, the audio still ranks them.

    When nothing fits but the caller was reading digits (an "oh" heard as "L", a "double" as
    "number"), ``last_resort`` decodes once more writing nothing but digit words; its scores
    are over that vocabulary alone, so it never outranks a fitting free reading."""
    fitting = [h for h in heard if fits_expected(h.text, context.expects)]
    if not fitting and reads_as_digits(max(heard, key=lambda h: h.avg_logprob).text):
        fitting = [h for h in last_resort() if fits_expected(h.text, context.expects)]
    return max(fitting, key=lambda h: h.avg_logprob) if fitting else heard[0]


def non_digit_tokens(
    encode: Callable[[str], list[int]], decode: Callable[[list[int]], str], eot: int
) -> set[int]:
    """Every text token (below ``eot``) that is not (part of) a digit, a digit word or a
    separator, for a tokenizer given by its ``encode`` and ``decode``: what the last-resort
    digit decode suppresses besides the tokens Whisper never emits."""
    allowed: set[int] = set()
    for word in sorted(DIGIT_VOCABULARY):
        for form in (word, word.capitalize()):
            allowed.update(encode(form) + encode(" " + form))
    for token in range(eot):
        text = decode([token]).strip()
        if text.isdigit() or (text and all(c in ",.-" for c in text)):
            allowed.add(token)
    return set(range(eot)) - allowed


def prompt_for(context: ASRContext | None) -> str | None:
    """The decoder prompt for a turn heard in ``context``, or None for a plain decode."""
    if context is None:
        return None
    if context.expects.kind in (Expect.DIGITS, Expect.PHONE):
        return DIGIT_PROMPT
    if context.vocabulary:
        return vocabulary_prompt(context.vocabulary)
    return None


def fits_expected(text: str, expects: Expectation) -> bool:
    """The decoded text reads as the answer the question asks for, the way the dialog reads
    it: exactly the expected number of digits, or a whole phone number (10 to 15 digits)."""
    if expects.kind is Expect.PHONE:
        return parse_phone_number(text) is not None
    return expects.digits is not None and len(read_digits(text, expects.digits)) == expects.digits


def reads_as_digits(text: str) -> bool:
    """At least half the decoded words are digits or digit words ("7 3 double L", "Number 3 1
    1."): the caller was reading out digits, not saying "it might be the old one"."""
    words = _words(text)
    digits = sum(w.isdigit() or w in DIGIT_VOCABULARY for w in words)
    return bool(words) and digits * 2 >= len(words)


def expects_digits(context: ASRContext | None) -> TypeGuard[ASRContext]:
    """The turn answers a question whose answer is a digit string of a known form."""
    return context is not None and (
        context.expects.kind is Expect.PHONE
        or (context.expects.kind is Expect.DIGITS and context.expects.digits is not None)
    )


def vocabulary_prompt(vocabulary: tuple[str, ...]) -> str:
    """The domain's terms as one short line of text, the longest prefix that fits."""
    out = ""
    for term in vocabulary:
        line = f"{out}, {term}" if out else term
        if len(line) + 1 > MAX_PROMPT_CHARS:
            break
        out = line
    return f"{out}." if out else ""


def token_budget(audio_s: float) -> int:
    """New tokens allowed for ``audio_s`` seconds of speech: a loop is cut, speech never is."""
    return min(MAX_NEW_TOKENS, TOKEN_MARGIN + math.ceil(audio_s * TOKENS_PER_S))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _is_digit(word: str) -> bool:
    return word.isdigit() or word in _DIGIT_WORDS


_DIGIT_WORDS = frozenset(_words(DIGIT_WORD_PROMPT))
# A copied run of the prompt this long is an echo; digits need a longer run, since a caller's
# "1 2 3 4" is also a run of "0 1 2 ... 9".
_ECHO_WORDS = 3
_ECHO_DIGITS = 6


def echoes_prompt(text: str, prompt: str | None) -> bool:
    """The decoded text is the prompt copied back (all of it, or a run of its words), not
    what the caller said: Whisper does this on audio it cannot make out."""
    if not prompt:
        return False
    said, given = _words(text), _words(prompt)
    if not said:
        return False
    if said == given:
        return True
    n = len(said)
    if n < (_ECHO_DIGITS if all(_is_digit(w) for w in said) else _ECHO_WORDS):
        return False
    return any(given[i : i + n] == said for i in range(len(given) - n + 1))
