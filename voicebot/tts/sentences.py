"""Cutting a reply into the pieces that are synthesized (and interrupted) one at a time."""

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str, max_words: int = 14) -> list[str]:
    """Split on sentence ends; long sentences also at commas, so first audio comes sooner.

    Short pieces are kept whole: a separate "Sure." would cost a synthesis round for 0.3 s
    of audio.
    """
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if not sentence:
            continue
        if len(sentence.split()) <= max_words:
            pieces.append(sentence)
            continue
        current = ""
        for clause in _CLAUSE_BREAK.split(sentence):
            current = f"{current} {clause}".strip()
            if len(current.split()) >= max_words // 2:
                pieces.append(current)
                current = ""
        if current:
            pieces.append(current)
    return pieces
