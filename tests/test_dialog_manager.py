"""Multi-turn flows through the real classifier, the real slot parsers and the SQLite bank."""

from datetime import date
from decimal import Decimal

import pytest

from voicebot.dialog.manager import _SLOT_EXPECTS, DialogManager
from voicebot.dialog.pack import load_pack
from voicebot.dialog.slots import SLOT_TYPES
from voicebot.events import CallerTurn, Expect, Expectation, Transcript
from voicebot.services.demo_bank import DemoBank

KNOWN = "+15551230001"  # Alex Morgan, ZIP 94107, debit 4567, credit 8812
SECOND = "+15551230002"  # ZIP 10001, debit 1234, inactive credit card 9090
TODAY = date(2026, 11, 24)


@pytest.fixture
def bank():
    return DemoBank(today=TODAY)


def talk(classifier, bank, lines, caller_id=KNOWN):
    dialog = DialogManager(load_pack("bank"), classifier, bank, caller_id=caller_id, today=TODAY)
    return dialog, [dialog.handle_text(line) for line in lines]


def card_status(bank, four, customer="c1"):
    return next(c.status for c in bank.cards(customer) if c.last_four == four)


def test_block_card_verifies_asks_confirms_and_really_blocks(classifier, bank):
    dialog, replies = talk(
        classifier,
        bank,
        [
            "hi um i think i lost my card",
            "nine four one zero seven",
            "four five six seven",
            "yes please",
        ],
    )
    assert "ZIP code" in replies[0].text and replies[0].kind == "question"
    assert replies[1].text.startswith("Thank you, you're verified.")
    assert "last four digits" in replies[1].text
    assert replies[2].text == "Shall I block the card ending in 4 5 6 7?"
    assert "debit card ending in 4 5 6 7 is blocked" in replies[3].text
    assert card_status(bank, "4567") == "blocked"
    assert dialog.verified and dialog.customer_id == "c1"


def test_each_reply_says_what_answer_it_expects(classifier, bank):
    """The open question travels with every reply, for the stages that adapt to it."""
    _, replies = talk(
        classifier,
        bank,
        ["hi um i think i lost my card", "nine four one zero seven", "4567", "yes please"],
    )
    assert [r.expects for r in replies] == [
        Expectation(Expect.DIGITS, digits=5, slot="verification", sensitive=True),
        Expectation(Expect.DIGITS, digits=4, slot="card_last_four"),
        Expectation(Expect.YES_NO),
        Expectation(Expect.REQUEST),
    ]
    assert set(_SLOT_EXPECTS) == set(SLOT_TYPES)  # every slot type says what it expects


def test_saying_no_to_the_confirmation_changes_nothing(classifier, bank):
    _, replies = talk(
        classifier,
        bank,
        ["my card was stolen", "94107", "it ends in 4567", "no don't"],
    )
    assert replies[-1].text.startswith("Okay, I won't block it.")
    assert card_status(bank, "4567") == "active"


def test_slot_given_with_the_request_is_not_asked_again(classifier, bank):
    _, replies = talk(classifier, bank, ["i lost my card ending in 4567", "94107"])
    assert "Shall I block the card ending in 4 5 6 7?" in replies[1].text


def test_digression_is_answered_then_the_flow_resumes(classifier, bank):
    _, replies = talk(
        classifier,
        bank,
        [
            "i lost my card",
            "94107",
            "wait what time are your branches open on saturday",
            "4567",
            "yes",
        ],
    )
    assert "Saturday" in replies[2].text
    assert "Now, back to blocking your card." in replies[2].text
    assert replies[2].text.endswith("last four digits.")
    assert replies[3].text == "Shall I block the card ending in 4 5 6 7?"
    assert card_status(bank, "4567") == "blocked"


def test_unusable_answers_are_reprompted_then_handed_off(classifier, bank):
    _, replies = talk(classifier, bank, ["i lost my card", "94107", "banana", "purple"])
    assert replies[2].kind == "reprompt" and "for example four five six seven" in replies[2].text
    assert replies[3].kind == "handoff" and replies[3].reason == "repeated_failure"
    assert replies[3].end_call


def test_failed_verification_hands_off_with_reason(classifier, bank):
    _, replies = talk(classifier, bank, ["what's my balance", "12345", "55555"])
    assert replies[1].kind == "reprompt" and "doesn't match" in replies[1].text
    assert replies[2].kind == "handoff" and "couldn't verify" in replies[2].text
    assert replies[2].reason == "repeated_failure"


def test_unknown_caller_id_asks_for_the_account_phone_number(classifier, bank):
    _, replies = talk(
        classifier,
        bank,
        [
            "what's my balance",
            "five five five one two three zero zero zero two",
            "one zero zero zero one",
        ],
        caller_id="+15550009999",
    )
    assert "phone number on your account" in replies[0].text
    assert "ZIP code" in replies[1].text
    assert "checking account has 530 dollars and 75 cents" in replies[2].text


def test_payment_moves_money_and_verification_is_asked_once(classifier, bank):
    _, replies = talk(
        classifier,
        bank,
        [
            "what's my balance",
            "94107",
            "i want to pay my credit card",
            "two hundred dollars",
            "yes",
        ],
    )
    assert "checking account has 2,415 dollars" in replies[1].text
    assert replies[2].text == "How much would you like to pay toward your credit card?"
    assert "Shall I pay 200 dollars" in replies[3].text
    assert "balance is now 420 dollars" in replies[4].text
    accounts = {a.kind: a.balance for a in bank.accounts("c1")}
    assert accounts["checking"] == Decimal("2215.00") and accounts["credit"] == Decimal("-420.00")


def test_back_office_refusal_is_spoken(classifier, bank):
    _, replies = talk(classifier, bank, ["i lost my card", "94107", "0000", "yes"])
    assert "can't find a card ending in 0 0 0 0" in replies[3].text


def test_asking_for_a_person_hands_off_at_once(classifier, bank):
    _, replies = talk(classifier, bank, ["can i talk to a real person please"])
    assert replies[0].kind == "handoff" and replies[0].reason == "caller_request"


def test_due_date_and_static_answers(classifier, bank):
    _, replies = talk(
        classifier, bank, ["when is my payment due", "94107", "where is the nearest branch"]
    )
    assert "due on Sunday, December 6th" in replies[1].text
    assert "Monday to Friday" in replies[2].text


def test_complaint_is_logged_with_the_callers_words(classifier, tmp_path):
    import sqlite3

    bank = DemoBank(tmp_path / "bank.db", today=TODAY)
    _, replies = talk(
        classifier,
        bank,
        ["i want to make a complaint", "um", "the staff at the main street branch were rude"],
    )
    assert replies[0].kind == "question" and "what happened" in replies[0].text
    assert replies[1].kind == "reprompt"  # "um" is not a complaint
    assert "reference 1 0 0, 0 0 1" in replies[2].text
    rows = sqlite3.connect(tmp_path / "bank.db").execute(
        "SELECT customer_id, caller_id, kind, details FROM cases"
    )
    assert rows.fetchall() == [
        ("c1", KNOWN, "complaint", "the staff at the main street branch were rude")
    ]


def test_fraud_report_blocks_the_card_and_opens_a_case(classifier, tmp_path):
    import sqlite3

    bank = DemoBank(tmp_path / "bank.db", today=TODAY)
    _, replies = talk(
        classifier,
        bank,
        [
            "someone used my card for something i didn't buy",
            "nine four one zero seven",
            "four five six seven",
            "a charge at an electronics store yesterday for three hundred dollars",
            "yes",
        ],
    )
    assert replies[3].text.startswith("I'll block the card ending in 4 5 6 7")
    assert "fraud case reference is 1 0 0, 0 0 1" in replies[4].text
    assert card_status(bank, "4567") == "blocked"
    kind, details = (
        sqlite3.connect(tmp_path / "bank.db").execute("SELECT kind, details FROM cases").fetchone()
    )
    assert kind == "report_fraud" and "electronics store" in details


def test_transfer_moves_money_after_confirmation(classifier, bank):
    _, replies = talk(
        classifier,
        bank,
        ["i want to move some money to my savings", "94107", "two hundred dollars", "yes"],
    )
    assert replies[2].text == "Shall I move 200 dollars from checking to savings?"
    balances = {a.kind: a.balance for a in bank.accounts("c1")}
    assert balances["checking"] == Decimal("2215.00") and balances["savings"] == Decimal("8220.00")
    assert "2,215 dollars" in replies[3].text


@pytest.fixture(scope="module")
def telecom(classifier):  # trained into the bank classifier's throwaway cache
    from voicebot.dialog.embeddings import SentenceEmbedder
    from voicebot.dialog.intent_classifier import IntentClassifier

    pack = load_pack("telecom")
    return pack, IntentClassifier.for_pack(pack, SentenceEmbedder())


def test_telecom_reads_account_data_only_to_a_verified_caller(telecom, bank):
    pack, classifier = telecom
    dialog = DialogManager(pack, classifier, bank, caller_id=KNOWN, today=TODAY)
    asked = dialog.handle_text("how much is my bill this month")
    assert "ZIP code" in asked.text and "dollars" not in asked.text
    wrong = dialog.handle_text("one two three four five")
    assert wrong.kind == "reprompt" and "dollars" not in wrong.text
    bill = dialog.handle_text("nine four one zero seven")
    assert bill.text.startswith("Thank you, you're verified. Your current bill is fifty four")
    data = dialog.handle_text("and how much data have i got left")  # verified once a call
    assert "gigabytes left" in data.text and "ZIP" not in data.text
    stranger = DialogManager(pack, classifier, bank, caller_id="+15550009999", today=TODAY)
    assert "phone number on your account" in stranger.handle_text("what's my bill").text


# --- Answers as the recognizer writes them (real tiny.en outputs, tests/data) -------------


def test_a_clear_yes_confirms_whatever_the_recognizer_made_of_the_rest(classifier, bank):
    """tiny.en on espeak-ng, "yes, the card ending in four five six seven"."""
    _, replies = talk(
        classifier,
        bank,
        ["i lost my card", "94107", "4567", "Yes, the car mending in 4-5-6, and run."],
    )
    assert "is blocked" in replies[-1].text and card_status(bank, "4567") == "blocked"
    assert replies[-1].intent.intent == "affirm"


def test_a_yes_naming_another_card_is_confirmed_for_that_card(classifier, bank):
    _, replies = talk(
        classifier,
        bank,
        ["i lost my card", "94107", "4567", "yes, the one ending in 8812", "yes"],
    )
    assert replies[3].text == "Shall I block the card ending in 8 8 1 2?"
    assert "credit card ending in 8 8 1 2 is blocked" in replies[4].text
    assert card_status(bank, "8812") == "blocked" and card_status(bank, "4567") == "active"


@pytest.mark.parametrize("agreement", ["send it", "please send it", "She'll send it."])
def test_agreeing_with_the_offered_action_is_a_yes(classifier, bank, agreement):
    """ "Shall I send it?" -> "send it" (typed, or as tiny.en wrote "sure, send it")."""
    _, replies = talk(classifier, bank, ["i forgot my pin", "94107", agreement])
    assert replies[-1].text.startswith("Done. The link is on its way")


@pytest.mark.parametrize(
    "closing",
    ["Now that's all, thank you, goodbye.", "Okay, thanks, by.", "That's it for today, thanks."],
)
def test_closings_end_the_call_through_the_usual_mishearings(classifier, bank, closing):
    _, replies = talk(classifier, bank, ["what time do your branches open", closing])
    assert replies[-1].kind == "farewell" and replies[-1].end_call


def test_no_thanks_once_served_ends_the_call(classifier, bank):
    """tiny.en's "No thanks, everything." for "no thanks, that's everything" (espeak-ng)."""
    _, replies = talk(
        classifier, bank, ["what time do your branches open", "No thanks, everything."]
    )
    assert replies[-1].kind == "farewell" and replies[-1].end_call


def test_no_thats_all_to_a_confirmation_ends_the_call(classifier, bank):
    _, replies = talk(classifier, bank, ["i lost my card", "94107", "4567", "no that's all, bye"])
    assert replies[-1].kind == "farewell" and card_status(bank, "4567") == "active"


def test_a_zip_of_the_wrong_length_is_asked_again_with_the_keypad_offered(classifier, bank):
    """ "101": tiny.en on "one oh oh oh one" (issue 13); never read as a wrong ZIP."""
    dialog, replies = talk(classifier, bank, ["what's my balance", "101", "9 4 1 0 7"])
    assert replies[1].kind == "reprompt"
    assert replies[1].text.startswith("I heard 3 digits, but I need 5.")
    assert "keypad" in replies[1].text and "doesn't match" not in replies[1].text
    assert dialog.verified and "checking account has" in replies[2].text


def test_a_digit_answer_of_the_wrong_length_twice_goes_to_a_person(classifier, bank):
    _, replies = talk(classifier, bank, ["what's my balance", "101", "1-0-0-1"])
    assert replies[2].kind == "handoff" and replies[2].reason == "repeated_failure"


def test_a_wrong_zip_is_asked_again_with_the_keypad_offered(classifier, bank):
    _, replies = talk(classifier, bank, ["what's my balance", "12345"])
    assert "doesn't match" in replies[1].text and "keypad" in replies[1].text


def test_card_digits_are_read_with_their_expected_length(classifier, bank):
    """tiny.en wrote "four five six seven" as "for 567" (pico2wave, a noisy line)."""
    _, replies = talk(
        classifier, bank, ["i lost my card", "94107", "Yes, lock the card ending for 567."]
    )
    assert replies[-1].text == "Shall I block the card ending in 4 5 6 7?"


def activate_on_a_second_try(classifier, bank, answer):
    """The card's digits misheard once, heard on the second try, then ``answer`` to the
    read-back."""
    lines = ["i want to activate my new card", "10001", "nine oh nine", "nine oh nine oh", answer]
    return talk(classifier, bank, lines, caller_id=SECOND)[1]


def test_digits_heard_on_a_second_try_are_read_back_before_acting(classifier, bank):
    replies = activate_on_a_second_try(classifier, bank, "yes")
    assert replies[2].text.startswith("I heard 3 digits, but I need 4.")
    assert replies[3].text == "I have 9 0 9 0. Is that right?"
    assert replies[3].expects == Expectation(Expect.YES_NO)
    assert "is now active" in replies[4].text
    assert card_status(bank, "9090", "c2") == "active"


def test_digits_read_back_and_denied_go_to_a_person(classifier, bank):
    """Asked twice already (the keypad offered): a third miss is a person's job."""
    replies = activate_on_a_second_try(classifier, bank, "no")
    assert replies[4].kind == "handoff" and replies[4].reason == "repeated_failure"
    assert card_status(bank, "9090", "c2") == "inactive"


def unheard(reason: str = "empty") -> CallerTurn:
    return CallerTurn("", Transcript("", -0.4, 0.1, 1.2, 0.1, dropped=reason), 1.0, 2.2)


def test_speech_without_words_is_asked_again_then_handed_off(classifier, bank):
    dialog, _ = talk(classifier, bank, ["what's my balance"])
    first = dialog.not_understood(unheard())
    assert first.kind == "reprompt" and first.text.startswith("Sorry, I didn't catch that.")
    assert "ZIP code" in first.text and "keypad" in first.text  # the open question, again
    assert first.expects.kind == Expect.DIGITS
    second = dialog.not_understood(unheard("repetition"))
    assert second.kind == "handoff" and second.reason == "low_confidence"
    assert second.decision.signals["heard"] == "no_words"


def test_a_caller_who_talks_without_words_then_goes_quiet_is_not_hung_up_on(classifier, bank):
    dialog, _ = talk(classifier, bank, [])
    assert dialog.not_understood(unheard()).kind == "reprompt"
    assert dialog.no_input().kind == "reprompt"
    last = dialog.no_input()
    assert last.kind == "handoff" and last.reason == "repeated_failure"  # never a hang-up
