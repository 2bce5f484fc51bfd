"""Word and character error counts (jiwer) over normalized text, summed over a corpus.

Rates are summed over the corpus (total errors / total reference words), not averaged per
item, so a long utterance weighs what its words weigh.
"""

from dataclasses import asdict, dataclass

import jiwer


@dataclass(frozen=True)
class Errors:
    """Edit counts of one hypothesis against its reference (words or characters)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    length: int = 0  # reference words (or characters)

    @property
    def rate(self) -> float:
        edits = self.substitutions + self.deletions + self.insertions
        return edits / self.length if self.length else float(edits > 0)

    def __add__(self, other: "Errors") -> "Errors":
        return Errors(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, int, int, int]:
        return self.substitutions, self.deletions, self.insertions, self.length

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "rate": round(self.rate, 4)}


def word_errors(reference: str, hypothesis: str) -> Errors:
    """Word edits; both texts already normalized (``voicebot.eval.normalize``)."""
    if not reference.split():
        return Errors(insertions=len(hypothesis.split()))
    out = jiwer.process_words(reference, hypothesis)
    return Errors(out.substitutions, out.deletions, out.insertions, len(reference.split()))


def char_errors(reference: str, hypothesis: str) -> Errors:
    """Character edits (spaces included) of the normalized texts."""
    if not reference:
        return Errors(insertions=len(hypothesis))
    out = jiwer.process_characters(reference, hypothesis)
    return Errors(out.substitutions, out.deletions, out.insertions, len(reference))


def total(errors: list[Errors]) -> Errors:
    return sum(errors, Errors())
