"""A turn that must be a digit string of a known form is read from the recognizer's
five-best under two prompts (digits, and digit words with "oh"): the likeliest hypothesis
of the expected form wins (real tiny.en, synthetic callers over a mu-law line); every other
turn keeps the greedy decode."""

import pytest

from voicebot.asr.base import ASRContext
from voicebot.asr.decoding import fits_expected
from voicebot.asr.faster_whisper import FasterWhisperASR
from voicebot.dialog.slots import read_digits
from voicebot.events import Expect, Expectation
from voicebot.tts.caller_voice import render_caller

ZIP = Expectation(Expect.DIGITS, digits=5, slot="verification")
LAST_FOUR = Expectation(Expect.DIGITS, digits=4, slot="card_last_four")


def test_fits_expected_reads_digits_as_the_dialog_does():
    assert fits_expected("9 4 1 0 7", ZIP) and fits_expected("It's 94107.", ZIP)
    assert fits_expected("ending for 567", LAST_FOUR)  # the dialog's homophone reading
    assert not fits_expected("9 4 1 0", ZIP) and not fits_expected("45, 67, 8", LAST_FOUR)
    phone = Expectation(Expect.PHONE)
    assert fits_expected("five five five 1 2 3 oh oh oh one", phone)
    assert not fits_expected("4 5 6 7", phone)  # a phone number has 10 to 15 digits
    assert not fits_expected("4 5 6 7", Expectation(Expect.DIGITS))  # no length to hold it to


def test_a_digit_word_answer_is_not_taken_for_a_copy_of_the_word_prompt():
    from voicebot.asr.decoding import DIGIT_WORD_PROMPT, echoes_prompt

    assert not echoes_prompt("four five six seven", DIGIT_WORD_PROMPT)  # a last four
    assert echoes_prompt("one two three four five six seven", DIGIT_WORD_PROMPT)
    assert echoes_prompt(DIGIT_WORD_PROMPT, DIGIT_WORD_PROMPT)


@pytest.fixture(scope="module")
def recognizers():
    return FasterWhisperASR("tiny.en"), FasterWhisperASR("tiny.en", digit_hypotheses=1)


def test_a_last_four_read_in_pairs_is_found_in_the_five_best(recognizers, tts):
    nbest, greedy = recognizers
    audio = render_caller("forty five sixty seven", voice="espeak-us", line="mulaw", piper=tts)
    heard = ASRContext(LAST_FOUR)
    assert read_digits(greedy.transcribe(audio, heard).text, 4) != "4567"  # greedy: "0"
    assert read_digits(nbest.transcribe(audio, heard).text, 4) == "4567"


def test_an_oh_heard_as_a_letter_is_read_again_in_digit_words_alone():
    """No free reading of "seven three double oh" has four digits ("7 3 double L"), nor has
    "double three one oh one" five ("Number 3 1 0 1"): a last decode that may write only
    digit words reads them right. An answer that is not digits, even with a digit word in
    it, is never made into one. Through a real call session (VAD, endpointer, guards), as
    ``voicebot eval digits`` plays its lines (the eval's line numbers seed the line noise)."""
    from voicebot.audio.telephone import line
    from voicebot.eval.digits import DigitCaller, DigitOptions, spoken
    from voicebot.tts.caller_voice import CallerRenderer

    caller, renderer = DigitCaller(DigitOptions()), CallerRenderer()

    def heard(says: str, voice: str, expects: Expectation, seed: int = 1) -> str:
        audio = spoken(says, voice, line("mulaw"), renderer, pause_s=0.35, seed=seed)
        return caller.hear(audio, expects).text

    try:
        assert read_digits(heard("seven three double oh", "flite-slt", LAST_FOUR, 24), 4) == "7300"
        assert read_digits(heard("double three one oh one", "mbrola-us1", ZIP, 8), 5) == "33101"
        for says in ("I moved recently, it might be the old one", "is it the billing address one"):
            for expects in (ZIP, LAST_FOUR):
                assert not fits_expected(heard(says, "mbrola-us1", expects), expects)
    finally:
        caller.close()


def test_reads_as_digits_wants_half_the_words_to_be_digits():
    from voicebot.asr.decoding import reads_as_digits

    assert reads_as_digits("7 3 double L") and reads_as_digits("Number 3 1 1.")
    assert not reads_as_digits("it might be the old one") and not reads_as_digits("")


def test_turns_that_expect_no_digits_keep_the_greedy_decode(recognizers, tts):
    nbest, greedy = recognizers
    audio = render_caller("I lost my card yesterday", voice="espeak-us", line="mulaw", piper=tts)
    for context in (None, ASRContext(), ASRContext(Expectation(Expect.DIGITS))):
        assert nbest.transcribe(audio, context).text == greedy.transcribe(audio, context).text


def test_digits_asr_routes_digit_answers_to_the_larger_model(recognizers, tts):
    """``--digits-asr base``: a digit answer is Whisper base's reading, any other turn
    tiny.en's (real models on both sides); the batching engine is refused beside it."""
    from voicebot.asr import DigitTurnsASR
    from voicebot.errors import ASRConfigError

    tiny, _ = recognizers
    base = FasterWhisperASR("base")
    both = DigitTurnsASR(tiny, base)
    assert both.name == "tiny.en+base"
    audio = render_caller("nine four one oh seven", voice="espeak-us", line="mulaw", piper=tts)
    for context, model in [
        (ASRContext(ZIP), base),
        (ASRContext(Expectation(Expect.PHONE)), base),
        (ASRContext(Expectation(Expect.REQUEST)), tiny),
        (None, tiny),
    ]:
        assert both.transcribe(audio, context).text == model.transcribe(audio, context).text
    assert (
        tiny.transcribe(audio, ASRContext(ZIP)).text != base.transcribe(audio, ASRContext(ZIP)).text
    )

    class Engine:  # what the session batches for itself (EngineASR)
        name = "torch:base"

        def transcribe(self, audio, context=None): ...
        def open_call(self): ...

    with pytest.raises(ASRConfigError, match="batching engine"):
        DigitTurnsASR(tiny, Engine())


def test_a_pack_that_names_a_digit_model_gets_it_and_the_flag_wins(tmp_path):
    """``recognizer: digits_model: base`` in a pack: the bot's digit answers go to base
    (the routing itself is tested above); ``--digits-asr`` overrides the pack's choice."""
    from pathlib import Path

    from voicebot.pipeline.bot import Bot, BotConfig

    mini = (Path(__file__).parent / "data" / "mini_pack.yaml").read_text()
    pack = tmp_path / "mini.yaml"
    pack.write_text(mini + "recognizer:\n  vocabulary: [mini bank]\n  digits_model: base\n")
    for flag, name in ((None, "tiny.en+base"), ("tiny.en", "tiny.en+tiny.en")):
        bot = Bot(BotConfig(pack=str(pack), digits_asr=flag))
        try:
            assert bot.asr.name == name
        finally:
            bot.close()
