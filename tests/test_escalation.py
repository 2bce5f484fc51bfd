"""The escalation ladder: sentiment cues, policy decisions, and the dialog handing off."""

from datetime import date

import pytest

from voicebot.dialog.manager import DialogManager
from voicebot.dialog.pack import load_pack
from voicebot.errors import PackError
from voicebot.events import HANDOFF_REASONS
from voicebot.handoff.policy import EscalationConfig, EscalationPolicy, TurnSignals
from voicebot.handoff.sentiment import analyze
from voicebot.services.demo_bank import DemoBank

KNOWN = "+15551230001"

# --- sentiment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "angry", "cue"),
    [
        ("this is ridiculous i've been waiting for an hour", True, "ridiculous"),
        ("you people are useless", True, "useless"),
        ("i'm sick and tired of this", True, "sick and tired"),
        ("this is so frustrating", False, "frustrating"),
        ("i lost my card yesterday", False, None),
        ("hello can you help me", False, None),  # "hell" must not match inside "hello"
        ("that's not ridiculous at all", False, None),  # negated
    ],
)
def test_sentiment_cues(text, angry, cue):
    result = analyze(text)
    assert result.angry is angry
    assert (cue in result.cues) if cue else not result.cues


def test_intensifier_and_mild_cues_add_up():
    assert analyze("this is annoying").anger == 0.5
    assert analyze("this is so annoying").anger == 0.75
    assert analyze("so annoying and frustrating, terrible").anger >= 1.0


# --- the policy on its own ----------------------------------------------------------------


def signals(intent="check_balance", confidence=0.95, **kw):
    return TurnSignals(text=kw.pop("text", "x"), intent=intent, confidence=confidence,
                       margin=kw.pop("margin", 0.9), **kw)  # fmt: skip


def test_first_unsure_turn_confirms_second_hands_off():
    policy = EscalationPolicy()
    first = policy.assess(
        signals(
            "out_of_scope",
            0.6,
            candidate="report_lost_or_stolen_card",
            candidate_score=0.5,
            candidate_lead=0.4,
        )
    )
    assert first.action == "confirm" and first.signals["candidate_score"] == 0.5
    second = policy.assess(signals("out_of_scope", 0.9))
    assert (second.action, second.reason) == ("handoff", "low_confidence")
    assert "2 unsure turns in a row" in second.explanation
    assert [d.action for d in policy.decisions] == ["confirm", "handoff"]


def test_a_confident_turn_resets_the_ladder():
    policy = EscalationPolicy()
    assert policy.assess(signals("out_of_scope", 0.9)).action == "rephrase"
    assert policy.assess(signals()).action == "proceed"
    assert policy.assess(signals("out_of_scope", 0.9)).action == "rephrase"


def test_misheard_audio_is_unsure_even_with_a_confident_intent():
    policy = EscalationPolicy()
    decision = policy.assess(signals(asr_logprob=-1.4, candidate="check_balance"))
    assert decision.action == "rephrase"  # never offer back what we probably misheard
    assert "log-prob -1.40" in decision.explanation
    assert policy.assess(signals(no_speech_prob=0.8)).reason == "low_confidence"


def test_a_muddy_goodbye_before_anything_was_done_does_not_hang_up():
    policy = EscalationPolicy()
    muddy = signals("goodbye", 0.94, text="MMD up, thank you for your ear.", asr_logprob=-0.92)
    decision = policy.assess(muddy)
    assert decision.action == "rephrase" and "goodbye before anything was done" in (
        decision.explanation
    )
    assert policy.assess(signals("goodbye", asr_logprob=-0.2)).action == "proceed"  # clear
    policy.outcome("answer", "check_balance", resolved=True)  # the caller was served...
    assert policy.assess(muddy).action == "proceed"  # ...so a noisy goodbye is a goodbye


def test_answers_to_questions_are_not_judged_by_intent():
    policy = EscalationPolicy()
    assert policy.assess(signals("out_of_scope", 0.99, answering=True)).action == "proceed"


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"intent": "speak_to_agent"}, "caller_request"),
        ({"intent": "out_of_scope", "text": "get me a human"}, "caller_request"),
        ({"anger": 2.0, "anger_cues": ("ridiculous",)}, "negative_sentiment"),
    ],
)
def test_immediate_handoffs(kw, reason):
    decision = EscalationPolicy().assess(signals(**kw))
    assert (decision.action, decision.reason) == ("handoff", reason)
    assert decision.reason in HANDOFF_REASONS


def test_refusing_a_person_is_not_a_request():
    decision = EscalationPolicy().assess(signals("deny", text="no i don't want an agent"))
    assert decision.action == "proceed"


def test_mild_anger_accumulates_over_the_call():
    policy = EscalationPolicy()
    assert policy.assess(signals(anger=0.5)).action == "proceed"
    assert policy.assess(signals(anger=0.5)).action == "proceed"
    assert policy.assess(signals(anger=0.5)).reason == "negative_sentiment"


def test_going_round_in_circles_is_a_repeated_failure():
    policy = EscalationPolicy()
    assert policy.outcome("answer", "branch_hours", resolved=False) is None
    assert policy.outcome("answer", "branch_hours", resolved=False) is None
    decision = policy.outcome("answer", "branch_hours", resolved=False)
    assert decision.reason == "repeated_failure" and decision.signals["unresolved"]

    policy = EscalationPolicy()
    for _ in range(2):
        assert policy.outcome("fallback", None, resolved=False) is None
    assert policy.outcome("reprompt", None, resolved=False).reason == "repeated_failure"


def test_silence_ends_politely_unless_the_caller_had_spoken():
    policy = EscalationPolicy()
    assert policy.silence() is None and policy.silence() is None
    policy.assess(signals())
    assert policy.silence() is None
    assert policy.silence().reason == "repeated_failure"


def test_pack_escalation_settings_are_validated(tmp_path):
    head = (
        "name: p\ngreeting: hi\nfallback: what?\nno_input: ['hello?']\n"
        "intents:\n  a:\n    examples: [x]\n    response: y\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text(head + "escalation:\n  low_confidence_turns: 3\n  anger: 2\n")
    config = load_pack(good).escalation
    assert config.low_confidence_turns == 3 and config.anger == 2.0
    assert config.min_margin == EscalationConfig().min_margin
    for body, reason in [
        ("escalation:\n  angr: 2\n", "unknown escalation setting.*angr"),
        ("escalation:\n  no_input: 1.5\n", "whole number"),
        ("escalation:\n  anger: loud\n", "must be a number"),
        ("escalation: [1]\n", "must be a mapping"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(head + body)
        with pytest.raises(PackError, match=reason):
            load_pack(bad)


# --- the dialog manager with the real classifier --------------------------------------------


def talk(classifier, lines, caller_id=KNOWN):
    dialog = DialogManager(
        load_pack("bank"), classifier, DemoBank(today=date(2026, 11, 24)), caller_id=caller_id
    )
    return dialog, [dialog.handle_text(line) for line in lines]


def test_explicit_request_hands_off_with_the_caller_request_reason(classifier):
    _, replies = talk(classifier, ["i lost my card", "can i just talk to a real person please"])
    assert replies[-1].kind == "handoff" and replies[-1].end_call
    assert replies[-1].reason == "caller_request"
    context = replies[-1].context
    assert context["wants"] == ["report a lost or stolen card"]
    assert context["customer_id"] == "c1" and not context["verified"]
    assert context["pending"] == ["blocking your card"]


def test_angry_caller_is_handed_off_with_the_cues(classifier):
    _, replies = talk(classifier, ["this is ridiculous, i've called three times, useless bank"])
    decision = replies[0].decision
    assert replies[0].reason == "negative_sentiment"
    assert {"ridiculous", "useless"} <= set(decision.signals["anger_cues"])


def test_unclear_then_confirmed_request_carries_on(classifier):
    dialog, replies = talk(classifier, ["erm my plastic thing went missing i think", "yes"])
    assert replies[0].text == "Did you want to report a lost or stolen card?"
    assert replies[0].decision.action == "confirm"
    assert replies[1].kind == "question" and "ZIP code" in replies[1].text  # the flow started
    assert dialog.snapshot()["wants"] == ["report a lost or stolen card"]


@pytest.mark.parametrize(
    ("answer", "label", "said"), [("yep block that one", "affirm", "blocked"),
                                  ("no keep it open", "deny", "won't block")]
)  # fmt: skip
def test_a_yes_or_no_is_recorded_as_the_answer_it_was(classifier, answer, label, said):
    assert classifier.classify(answer).intent != label  # the classifier alone gets it wrong
    _, replies = talk(classifier, ["i lost my card", "nine four one zero seven", "4567", answer])
    assert replies[2].kind == "question" and "4 5 6 7" in replies[2].text  # "Shall I block..."
    assert replies[3].intent.intent == label and said in replies[3].text
    assert replies[3].intent.scores  # the classifier's own view is kept


def test_a_close_call_between_two_requests_asks_to_rephrase(classifier):
    _, replies = talk(classifier, ["i have a question about my account"])
    assert replies[0].kind == "fallback" and replies[0].decision.action == "rephrase"


def test_saying_no_to_the_guess_leaves_one_rung(classifier):
    _, replies = talk(
        classifier, ["erm my plastic thing went missing i think", "no", "what is the weather like"]
    )
    assert replies[1].kind == "reprompt" and replies[1].text.startswith("Sorry about that.")
    assert replies[2].reason == "low_confidence"


def test_two_unclear_turns_hand_off_with_low_confidence(classifier):
    _, replies = talk(classifier, ["what's the weather like in paris", "do you sell pizza"])
    assert replies[0].kind == "fallback" and replies[0].decision.action == "rephrase"
    assert replies[1].reason == "low_confidence"
    assert "unsure turns in a row" in replies[1].decision.explanation


def test_out_of_scope_digression_mid_flow_does_not_hand_off(classifier):
    dialog, replies = talk(
        classifier,
        ["i lost my card", "nine four one zero seven", "what's the weather like", "4567", "yes"],
    )
    assert [r.kind for r in replies].count("handoff") == 0
    assert "blocked" in replies[-1].text
    assert dialog.snapshot()["done"] and "blocked" in dialog.snapshot()["done"][0]


def test_exhausted_reprompts_hand_off_as_repeated_failure(classifier):
    _, replies = talk(classifier, ["i lost my card", "one two", "three"])
    assert replies[-1].reason == "repeated_failure"
    assert "unanswered after 2 tries" in replies[-1].decision.explanation


def test_silence_mid_conversation_goes_to_a_person(classifier):
    dialog, _ = talk(classifier, ["what's my balance"])
    assert dialog.no_input().kind == "reprompt"
    handoff = dialog.no_input()
    assert handoff.reason == "repeated_failure" and handoff.end_call
