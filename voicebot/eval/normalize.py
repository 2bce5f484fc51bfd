"""The text normalizer WER and CER are computed on, so that only real recognition errors count.

Whisper writes "$200, um, 9-4-1-0-7." where a reference says "two hundred dollars nine four
one zero seven": the same words, which must not count as errors. Both sides go through the
same rules, in this order:

1. Unicode NFKC, lower case, typographic apostrophes and dashes made ASCII.
2. Annotations in brackets are removed: ``[laughter]``, ``<unk>``, ``<cutoff-montreal>``.
3. Symbols are spoken: ``$5`` -> "5 dollars", ``%`` -> "percent", ``&`` -> "and".
4. Punctuation goes (apostrophes inside words stay: "don't", "i'm"); hyphens separate words.
5. Fillers are removed: uh, um, er, erm, ah, eh, hm, hmm, mm. "Uh-huh", "mm-hmm" and "mhm" mean
   yes, so they stay, all written "mhm". A caller's hesitation is not a word the bot needs.
6. A few spellings are unified: "ok" -> "okay", "mr" -> "mister", "mrs" -> "missus",
   "dr" -> "doctor".
7. Numbers, written or spoken, become their digits, one token per digit: "94107", "9-4-1-0-7"
   and "nine four one zero seven" are all ``9 4 1 0 7``; "two hundred and fifty", "250" and
   "$250" are ``2 5 0`` ("dollars" stays a word); "3.1" and "three point one" are
   ``3 point 1``; ordinals lose their suffix ("21st", "twenty first" -> ``2 1``). A wrong digit
   in a card number or ZIP code is one error, as it is for the caller.
"""

import re
import unicodedata

from voicebot.dialog.slots import read_number, tokenize

FILLERS = frozenset({"uh", "um", "umm", "uhm", "er", "erm", "ah", "eh", "hm", "hmm", "mm", "mmm"})
SPELLINGS = {"ok": "okay", "mr": "mister", "mrs": "missus", "dr": "doctor"}

_ANNOTATION = re.compile(r"\[[^\]]*\]|<[^>]*>")
_YES_SOUNDS = re.compile(r"\b(?:uh[- ]huh|mm[- ]hmm|mhm)\b")
_DOLLARS = re.compile(r"\$\s*([0-9][0-9,]*(?:\.[0-9]+)?)")
_DASHES = str.maketrans({"‐": "-", "‑": "-", "–": "-", "—": "-"})
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus "}
_NUMERAL = re.compile(r"[0-9][0-9,]*(?:\.[0-9]+)?(?:st|nd|rd|th)?")


def normalize(text: str) -> str:
    """``text`` as the space-separated tokens WER is counted over (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _ANNOTATION.sub(" ", text)
    text = _YES_SOUNDS.sub(" mhm ", text.translate(_DASHES))
    text = _DOLLARS.sub(r"\1 dollars", text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    words = [SPELLINGS.get(w, w) for w in tokenize(text) if w not in FILLERS]
    return " ".join(_numbers_to_digits(words))


def _numbers_to_digits(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if _NUMERAL.fullmatch(word):
            whole, _, fraction = re.sub(r"st|nd|rd|th|,", "", word).partition(".")
            out += [*whole] + (["point", *fraction] if fraction else [])
            i += 1
            continue
        spoken = read_number(words, i, ordinals=True)
        if spoken is None:
            out.append(word)
            i += 1
        else:
            out += [*str(spoken.value)]
            i = spoken.end
    return out
