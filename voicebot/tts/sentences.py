"""Cutting a reply into the pieces that are synthesized (and interrupted) one at a time."""

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str, max_words: int = 14, first_words: int = 6) -> list[str]:
    """Split on sentence ends; long sentences also at commas, so first audio comes sooner.

    The reply's first piece decides when the caller hears the bot, so a first sentence
    longer than ``first_words`` is cut at its first comma ("For your security," then the
    question: Piper takes ~50 ms for the clause instead of ~200 ms for the whole sentence,
    and pauses at the comma anyway). Short pieces are kept whole: a separate "Sure." would
    cost a synthesis round for 0.3 s of audio.
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
    if pieces and len(pieces[0].split()) > first_words:
        head, *rest = _CLAUSE_BREAK.split(pieces[0], maxsplit=1)
        if rest and len(head.split()) >= 2:
            pieces[:1] = [head, rest[0]]
    return pieces
