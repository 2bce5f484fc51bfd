"""Caller sentiment from what they said: a small lexicon that explains itself.

A call center needs to know *why* the bot thinks a caller is angry (the agent reads the
reason on the handoff card), so this is a transparent lexicon rather than an opaque model:
each cue that fired is returned with the score. Transcripts are lower-case Whisper text, so
only words count (no capitals, no exclamation marks from the caller).

Scores run from 0 (neutral) up; ``anger`` >= 1.0 is a clearly angry turn. Strong cues
(profanity, "this is ridiculous", threats to leave) score 1.0 each, mild ones
("annoying", "still not working") 0.5; an intensifier before a cue ("so annoying") adds
half again, and a negation right before it ("not bad") cancels it.
"""

import re
from dataclasses import dataclass, field

# Multi-word cues are matched as phrases on the normalized text.
_STRONG = (
    "ridiculous",
    "unacceptable",
    "outrageous",
    "furious",
    "livid",
    "disgusting",
    "disgraceful",
    "pathetic",
    "useless",
    "incompetent",
    "worst",
    "fed up",
    "sick of",
    "sick and tired",
    "had enough",
    "this is a joke",
    "are you kidding",
    "you're kidding me",
    "waste of time",
    "wasting my time",
    "stupid",
    "idiot",
    "idiots",
    "damn",
    "damned",
    "hell",
    "crap",
    "shit",
    "bullshit",
    "fuck",
    "fucking",
    "bloody",
    "pissed",
    "i'm angry",
    "i am angry",
    "so angry",
    "i'm leaving this bank",
    "close everything",
    "take my business elsewhere",
    "i'll sue",
    "lawyer",
    "report you",
)
_MILD = (
    "annoying",
    "annoyed",
    "frustrating",
    "frustrated",
    "upset",
    "unhappy",
    "not happy",
    "disappointed",
    "terrible",
    "awful",
    "horrible",
    "still not",
    "again and again",
    "third time",
    "already told you",
    "i already said",
    "listen to me",
    "you're not listening",
    "you don't understand",
    "not what i said",
    "that's not what i",
    "ugh",
)
_INTENSIFIERS = {"so", "very", "really", "totally", "absolutely", "completely", "extremely"}
_NEGATIONS = {"not", "no", "never", "isn't", "wasn't", "don't", "didn't", "aren't"}
# Cues that are negations themselves must not be cancelled by the word before them.
_SELF_NEGATING = {"not happy", "still not", "you're not listening", "not what i said"}
ANGRY = 1.0  # the score at which a turn counts as angry


@dataclass(frozen=True)
class Sentiment:
    """``anger`` score of one caller turn and the cues that produced it."""

    anger: float = 0.0
    cues: tuple[str, ...] = field(default_factory=tuple)

    @property
    def angry(self) -> bool:
        return self.anger >= ANGRY


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("’", "'"))


def analyze(text: str) -> Sentiment:
    """Score the anger in one caller turn; see the module docstring for the rules."""
    words = _words(text)
    joined = f" {' '.join(words)} "
    score, cues = 0.0, []
    for weight, lexicon in ((1.0, _STRONG), (0.5, _MILD)):
        for cue in lexicon:
            for match in re.finditer(rf"(?<= ){re.escape(cue)}(?= )", joined):
                before = joined[: match.start()].split()[-2:]
                if cue not in _SELF_NEGATING and before and before[-1] in _NEGATIONS:
                    continue
                boost = 1.5 if before and before[-1] in _INTENSIFIERS else 1.0
                score += weight * boost
                cues.append(cue)
    return Sentiment(round(score, 2), tuple(dict.fromkeys(cues)))
