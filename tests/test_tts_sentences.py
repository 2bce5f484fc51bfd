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
