from voicebot.tts.sentences import split_sentences


def test_sentences():
    assert split_sentences("Hello there. How can I help? Bye!") == [
        "Hello there.",
        "How can I help?",
        "Bye!",
    ]


def test_long_sentences_break_at_commas():
    text = (
        "I can help you with that, but first I need to verify your identity, "
        "so please tell me your date of birth and the last four digits of your card."
    )
    pieces = split_sentences(text)
    assert len(pieces) > 1 and " ".join(pieces) == text


def test_empty():
    assert split_sentences("   ") == []


def test_a_long_first_sentence_speaks_its_first_clause_first():
    text = "For your security, what's the five digit ZIP code on your account? Thanks, noted."
    assert split_sentences(text) == [
        "For your security,",
        "what's the five digit ZIP code on your account?",
        "Thanks, noted.",  # only the first piece is cut: it is what the caller waits for
    ]
    short = "Thank you, you're verified."
    assert split_sentences(short) == [short]  # short enough already
    no_comma = "Your debit card ending in four five six seven is now blocked."
    assert split_sentences(no_comma) == [no_comma]
    one_word_head = "Okay, so what's the five digit code please?"
    assert split_sentences(one_word_head) == [one_word_head]  # "Okay," alone: not worth it
