"""Guards against Whisper's known failure modes on telephone audio.

Whisper was trained on subtitles: on silence or noise it tends to "hear" YouTube outros
("thanks for watching") or loops one phrase forever. These plain functions decide whether a
decoded text is believable; the recognizer reports *why* it dropped one, so an operator can
tune the thresholds from the transcript instead of guessing.
"""

import re
import unicodedata
import zlib
from dataclasses import dataclass

from voicebot.asr.decoding import echoes_prompt
from voicebot.dialog.slots import digit_run, is_number_word
from voicebot.events import Transcript

# Phrases Whisper emits on non-speech. Dropped whatever the confidence.
_ALWAYS_HALLUCINATED = {
    "thanks for watching",
    "thank you for watching",
    "please subscribe",
    "like and subscribe",
    "subtitles by the amaraorg community",
    "transcription by castingwords",
}
# Plausible caller words that Whisper also invents on noise: dropped only when unsure.
_OFTEN_HALLUCINATED = {"you", "thank you", "bye", "okay", "so", "the", "uh", "um", "hmm"}
# The longest digit string a caller reads out: a card number (up to 19 digits), a phone
# number (E.164: up to 15). Read digit by digit, such a string compresses like a decoding loop
# ("4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1": gzip ratio 2.6), but it is an answer; a real loop of
# digits runs on far longer (Whisper looped "4, 4, 4, ..." over 100 times on a noisy line).
MAX_SPOKEN_DIGITS = 20
_DIGIT_ANSWER_OTHER_WORDS = 8  # "yes my card number is ...": a few words around the digits


@dataclass(frozen=True)
class GuardConfig:
    no_speech_threshold: float = 0.6  # Whisper's own rule: no-speech prob above this...
    logprob_threshold: float = -1.0  # ...and average log-prob below this means silence
    max_compression_ratio: float = 2.4  # gzip ratio above this means a repetition loop
    unsure_logprob: float = -0.7  # below this, a stock hallucination phrase is dropped
    # ...and above this no-speech probability. A real "Bye." on a phone line reaches 0.43
    # (tiny.en, 20 renders by five engines: 0.05-0.43); noise read as "you" is far above.
    unsure_no_speech: float = 0.45


def normalize_words(text: str) -> str:
    """Lower-case words only, for comparing texts and matching stock phrases."""
    return " ".join(re.sub(r"[^\w\s']", "", text.lower()).split())


def compression_ratio(text: str) -> float:
    """gzip compression ratio, as Whisper computes it: loops compress far better than speech."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_digit_answer(text: str) -> bool:
    """Digits as a caller reads them (a ZIP, a card, a phone number), with a few words around
    them at most: repetition there is the number itself, not the decoder looping."""
    run = digit_run(text)
    return 0 < len(run.digits) <= MAX_SPOKEN_DIGITS and run.others <= _DIGIT_ANSWER_OTHER_WORDS


def other_script(text: str) -> bool:
    """Letters mostly outside the Latin script: a caller of an English line did not say it
    (Whisper writes another language's script when it cannot make out the words)."""
    letters = [c for c in text if c.isalpha()]
    latin = sum(unicodedata.name(c, "").startswith("LATIN") for c in letters)
    return bool(letters) and latin * 2 < len(letters)


def collapse_repeats(text: str, max_ngram: int = 6, min_repeats: int = 3) -> str:
    """Collapse an n-gram repeated ``min_repeats`` or more times in a row into one occurrence.

    "I want to I want to I want to pay" keeps its meaning as "I want to pay". Numbers are
    never collapsed: "one oh oh oh one" and "8 0 0 0" mean every digit.
    """
    words = text.split()
    for n in range(1, max_ngram + 1):
        out: list[str] = []
        i = 0
        while i < len(words):
            gram = [w.lower().strip(".,!?") for w in words[i : i + n]]
            repeats = 1
            while (
                len(gram) == n
                and [
                    w.lower().strip(".,!?") for w in words[i + repeats * n : i + (repeats + 1) * n]
                ]
                == gram
            ):
                repeats += 1
            if repeats >= min_repeats and not all(is_number_word(w) for w in gram):
                out.extend(words[i : i + n])
                i += repeats * n
            else:
                out.append(words[i])
                i += 1
        words = out
    return " ".join(words)


def drop_reason(
    text: str,
    avg_logprob: float,
    no_speech_prob: float,
    config: GuardConfig,
    prompt: str | None = None,
) -> str | None:
    """Why ``text`` should not be believed, or None when it looks like real speech.

    ``prompt`` is the text the decoder was prompted with: a copy of it is not the caller's.
    """
    words = normalize_words(text)
    if not words:
        return "empty"
    if other_script(text):
        return "other_script"
    if echoes_prompt(text, prompt):
        return "prompt_echo"
    # A prompted decode copies its prompt confidently on noise (white noise under the digit
    # prompt: "1 2 3 4 5 7 8 9 9 9 ..." at log-prob -0.78, no-speech 0.87): then Whisper's
    # no-speech probability alone decides, as real speech stays below it (1 turn in 1284).
    unsure = avg_logprob < config.logprob_threshold or bool(prompt)
    if no_speech_prob > config.no_speech_threshold and unsure:
        return "no_speech"
    if compression_ratio(text) > config.max_compression_ratio and not is_digit_answer(text):
        return "repetition"
    if words.replace(".", "") in _ALWAYS_HALLUCINATED:
        return "hallucination"
    if words in _OFTEN_HALLUCINATED and (
        avg_logprob < config.unsure_logprob or no_speech_prob > config.unsure_no_speech
    ):
        return "hallucination"
    return None


def judge(
    raw: str,
    avg_logprob: float,
    no_speech_prob: float,
    *,
    audio_s: float,
    compute_s: float,
    config: GuardConfig,
    prompt: str | None = None,
) -> Transcript:
    """The recognizer's result for a decoded text: kept (repeats collapsed) or dropped with why.

    Every backend ends here, so the same audio is judged the same whichever engine decoded it.
    """
    reason = drop_reason(raw, avg_logprob, no_speech_prob, config, prompt)
    return Transcript(
        text="" if reason else collapse_repeats(raw),
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech_prob,
        audio_s=audio_s,
        compute_s=compute_s,
        dropped=reason,
        raw_text=raw,
    )
