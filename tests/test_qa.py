"""QA criteria on small call records, the form loader's errors, and the scorecard."""

import json
from pathlib import Path

import pytest

from voicebot.errors import QaFormError
from voicebot.qa.criteria import CRITERIA, Verdict, digit_runs, mask_digits, split_parts
from voicebot.qa.form import load_qa, load_qa_file
from voicebot.qa.scorecard import LLMJudge, Scorecard, score_call

BANK = load_qa("bank")
assert BANK is not None
SPECS = {spec.name: spec for spec in BANK.form.criteria}


def record(*turns: tuple, **fields) -> dict:
    """A call record: turns are (role, text, start, end) plus optional extra fields."""
    out = []
    for turn in turns:
        role, text, start, end, *extra = turn
        out.append(
            {"role": role, "text": text, "start": start, "end": end, **(extra[0] if extra else {})}
        )
    return {
        "call_id": "c1",
        "pack": "bank",
        "started_at": "2026-11-30T10:00:00+00:00",
        "ended_by": "bot",
        "turns": out,
        **fields,
    }


def check(name: str, rec: dict, part: int = 0):
    spec = SPECS[name]
    return spec.criterion.rule(split_parts(rec)[part], spec.settings)


GREETING = (
    "bot",
    "Thank you for calling Northwind Bank. How can I help you today?",
    0.5,
    4.0,
    {"kind": "greeting"},
)


def test_greeting_needs_a_greeting_and_the_company_in_the_first_turn():
    good = check("greeting", record(GREETING))
    assert good.verdict == Verdict.PASS and good.evidence[0].turn == 0
    nameless = check("greeting", record(("bot", "Hello. How can I help?", 0.5, 2.0)))
    assert nameless.verdict == Verdict.FAIL and "company" in nameless.explanation
    late = record(
        ("bot", "What do you want?", 0.5, 2.0), ("bot", "Welcome to Northwind Bank", 3, 4)
    )
    assert check("greeting", late).verdict == Verdict.FAIL


def test_account_detail_only_after_verification():
    verified = record(
        GREETING,
        ("caller", "what's my balance", 5.0, 6.0),
        ("bot", "For your security, what's the five digit ZIP code on your account?", 7.0, 10.0),
        ("caller", "9 4 1 0 7", 11.0, 12.5),
        ("bot", "Thank you, you're verified. Your checking account has 2,415 dollars.", 13.0, 17.0),
    )
    result = check("verified_before_account_detail", verified)
    assert result.verdict == Verdict.PASS and [e.turn for e in result.evidence] == [4, 4]
    unverified = record(
        GREETING,
        ("caller", "what's my balance", 5.0, 6.0),
        ("bot", "Your checking account has 2,415 dollars.", 7.0, 9.0),
    )
    leak = check("verified_before_account_detail", unverified)
    assert leak.verdict == Verdict.FAIL and leak.evidence[0].turn == 2
    assert check("verified_before_account_detail", record(GREETING)).verdict == Verdict.NA


def test_sensitive_readback_of_a_verification_answer_or_a_card_number():
    base = [
        GREETING,
        ("caller", "my card was stolen", 5.0, 6.0),
        ("bot", "For your security, what's the five digit ZIP code on your account?", 7.0, 10.0),
        ("caller", "nine four one zero seven", 11.0, 12.5),
    ]
    echoed = record(*base, ("bot", "Thanks, I have your ZIP as 9 4 1 0 7.", 13.0, 15.0))
    result = check("no_sensitive_readback", echoed)
    assert result.verdict == Verdict.FAIL and result.evidence[0].turn == 4
    assert "turn 3" in result.evidence[0].note
    card = record(*base, ("bot", "Your card number is 4 1 1 1 2 2 2 2 3 3 3 3 4 5 6 7.", 13, 18))
    assert check("no_sensitive_readback", card).verdict == Verdict.FAIL
    last_four = record(*base, ("bot", "Shall I block the card ending in 4 5 6 7?", 13.0, 15.0))
    assert check("no_sensitive_readback", last_four).verdict == Verdict.PASS


def test_an_account_detail_is_a_figure_told_about_the_account_and_an_accepted_answer_verifies():
    def verdict(*turns: tuple) -> Verdict:
        return check("verified_before_account_detail", record(GREETING, *turns)).verdict

    ask = ("bot", "Can I have the ZIP code on the account?", 5.0, 7.0)
    answer = ("caller", "one oh oh oh one", 8.0, 9.5)
    assert verdict(("bot", "I can see a charge of 89 dollars yesterday.", 5.0, 8.0)) == Verdict.FAIL
    assert verdict(("bot", "You've used eighteen gigabytes this month.", 5.0, 8.0)) == Verdict.FAIL
    # prices anyone may hear, and questions, tell nothing about the account
    assert verdict(("bot", "Our unlimited plan is 55 dollars a month.", 5.0, 8.0)) == Verdict.NA
    assert verdict(("bot", "The pass is ten dollars a day on your line.", 5.0, 8.0)) == Verdict.NA
    assert verdict(("bot", "Shall I move 50 dollars to your savings?", 5.0, 8.0)) == Verdict.NA
    matched = ("bot", "Great, that matches. Your savings has 3.5 thousand dollars.", 10.0, 14.0)
    result = check("verified_before_account_detail", record(GREETING, ask, answer, matched))
    assert result.verdict == Verdict.PASS and "identity verified" in result.evidence[0].note
    # "that matches" is a check only as the reply to an answered secret question
    store = ("bot", "Which store was it?", 5.0, 7.0)
    assert verdict(store, ("caller", "fresh mart", 8.0, 9.0), matched) == Verdict.FAIL
    assert verdict(ask, matched) == Verdict.FAIL  # asked, never answered


def test_every_action_needs_a_yes_to_a_confirmation_question():
    confirmed = record(
        GREETING,
        ("caller", "block my card ending 4567", 5.0, 6.5),
        ("bot", "Shall I block the card ending in 4 5 6 7?", 7.0, 9.0),
        ("caller", "yes please", 10.0, 10.8),
        ("bot", "Done. Your debit card ending in 4 5 6 7 is blocked.", 11.5, 14.0),
    )
    assert check("confirmed_before_action", confirmed).verdict == Verdict.PASS
    unconfirmed = record(
        GREETING,
        ("caller", "block my card ending 4567", 5.0, 6.5),
        ("bot", "Done. Your debit card ending in 4 5 6 7 is blocked.", 7.0, 9.0),
    )
    result = check("confirmed_before_action", unconfirmed)
    assert result.verdict == Verdict.FAIL and result.evidence[0].turn == 2
    said_no = record(
        GREETING,
        ("caller", "block my card", 5.0, 6.0),
        ("bot", "Shall I block the card ending in 4 5 6 7?", 7.0, 9.0),
        ("caller", "no", 10.0, 10.4),
        ("bot", "Done. Your card is blocked.", 11.0, 12.0),
    )
    assert check("confirmed_before_action", said_no).verdict == Verdict.FAIL
    assert check("confirmed_before_action", record(GREETING)).verdict == Verdict.NA
    done = record(
        GREETING,
        ("bot", "Shall I open a dispute for it?", 5.0, 7.0),
        ("caller", "yes", 8.0, 8.4),
        ("bot", "Done, the dispute is open.", 9.0, 10.5),
    )
    assert check("confirmed_before_action", done).verdict == Verdict.PASS  # any pack's "done"


def test_further_help_is_offered_unless_the_call_was_handed_off():
    offered = record(
        GREETING,
        ("caller", "when is my payment due", 5.0, 6.0),
        ("bot", "It is due on Friday. Is there anything else I can help with?", 7.0, 9.0),
    )
    assert check("offered_further_help", offered).verdict == Verdict.PASS
    silent = record(
        GREETING,
        ("caller", "when is my payment due", 5.0, 6.0),
        ("bot", "It is due on Friday. Goodbye.", 7.0, 9.0),
    )
    assert check("offered_further_help", silent).verdict == Verdict.FAIL
    handed = record(
        GREETING,
        ("caller", "agent please", 5, 6),
        ("bot", "Let me connect you.", 7, 8),
        handoff_reason="caller_request",
        ended_by="handoff",
    )
    assert check("offered_further_help", handed).verdict == Verdict.NA


def test_empathy_is_needed_on_every_complaint():
    apologized = record(
        GREETING,
        ("caller", "this is ridiculous, I was charged twice", 5.0, 7.0),
        ("bot", "I'm sorry about that. Let me look into it.", 8.0, 10.0),
    )
    assert check("empathy_on_complaint", apologized).verdict == Verdict.PASS
    cold = record(
        GREETING,
        ("caller", "this is ridiculous, I was charged twice", 5.0, 7.0),
        ("bot", "Let me connect you to one of our agents.", 8.0, 10.0, {"kind": "handoff"}),
    )
    result = check("empathy_on_complaint", cold)
    assert result.verdict == Verdict.FAIL and [e.turn for e in result.evidence] == [1, 2]
    calm = record(GREETING, ("caller", "what's my balance", 5, 6), ("bot", "Sure.", 7, 8))
    assert check("empathy_on_complaint", calm).verdict == Verdict.NA


def test_handoff_reason_must_fit_the_call():
    asked = record(
        GREETING,
        ("caller", "can I speak to a real person please", 5.0, 7.0, {"intent": "speak_to_agent"}),
        ("bot", "Let me connect you to one of our agents.", 8.0, 10.0, {"kind": "handoff"}),
        handoff_reason="caller_request",
    )
    assert check("correct_handoff", asked).verdict == Verdict.PASS
    wrong = dict(asked, handoff_reason="negative_sentiment")
    result = check("correct_handoff", wrong)
    assert result.verdict == Verdict.FAIL and "caller_request" in result.explanation
    ignored = record(
        GREETING,
        ("caller", "I want to talk to a human", 5.0, 6.5),
        ("bot", "Sorry, I didn't quite catch that.", 7.0, 8.0, {"kind": "fallback"}),
        ("caller", "let me speak to an agent", 9.0, 10.0),
        ("bot", "How can I help you today?", 11.0, 12.0),
    )
    assert check("correct_handoff", ignored).verdict == Verdict.FAIL
    assert check("correct_handoff", record(GREETING)).verdict == Verdict.NA


def test_silence_after_the_caller_is_measured_against_the_limit():
    slow = record(
        GREETING, ("caller", "what's my balance", 5.0, 6.0), ("bot", "One moment.", 12.5, 13.0)
    )
    result = check("no_long_silence", slow)
    assert result.verdict == Verdict.FAIL and "6.5 s" in result.evidence[0].note
    quick = record(
        GREETING, ("caller", "what's my balance", 5.0, 6.0), ("bot", "One moment.", 7.0, 8.0)
    )
    assert check("no_long_silence", quick).verdict == Verdict.PASS


def test_talking_over_the_caller_is_not_the_caller_barging_in():
    over = record(
        GREETING,
        ("caller", "I lost my card and I think", 5.0, 9.0),
        ("bot", "Which card?", 6.5, 7.5),
    )
    assert check("no_talk_over", over).verdict == Verdict.FAIL
    barge = record(
        ("bot", "Thank you for calling Northwind Bank, how", 0.5, 3.0),
        ("caller", "lost card", 2.0, 3.0),
    )
    assert check("no_talk_over", barge).verdict == Verdict.PASS


def test_prohibited_phrases_and_sentiment():
    rude = record(
        GREETING,
        ("caller", "why is this so slow", 5, 6),
        ("bot", "Calm down, that's not my problem.", 7, 9),
    )
    result = check("prohibited_phrases", rude)
    assert result.verdict == Verdict.FAIL and result.evidence[0].turn == 2
    worse = record(
        GREETING,
        ("caller", "hi thanks, I have a question", 5, 6),
        ("bot", "Sure.", 7, 8),
        ("caller", "this is useless, you idiots", 9, 10),
    )
    assert check("sentiment_end_vs_start", worse).verdict == Verdict.FAIL
    better = record(
        GREETING,
        ("caller", "this is ridiculous", 5, 6),
        ("bot", "Sorry.", 7, 8),
        ("caller", "great, thank you", 9, 10),
    )
    assert check("sentiment_end_vs_start", better).verdict == Verdict.PASS


def test_an_agent_part_is_scored_on_the_agents_own_turns():
    rec = record(
        GREETING,
        ("caller", "I need a person", 5.0, 6.0, {"intent": "speak_to_agent"}),
        ("bot", "Let me connect you to one of our agents.", 7.0, 9.0, {"kind": "handoff"}),
        (
            "agent",
            "Hi, Sam at Northwind Bank. I can see your card number is 4111 2222 3333 4567.",
            30.0,
            36.0,
        ),
        ("caller", "why are you reading that out", 37.0, 39.0),
        ("agent", "Whatever, calm down.", 45.0, 46.0),
        handoff_reason="caller_request",
        ended_by="caller",
    )
    _, agent = split_parts(rec)
    assert [line.index for line in agent.lines] == [3, 4, 5]
    card = score_call(rec, BANK.form)
    agent_part = card.part("agent")
    assert agent_part is not None and agent_part.passed is False and agent_part.critical_failed
    assert {"no_sensitive_readback", "prohibited_phrases", "no_long_silence"} <= set(
        agent_part.failed
    )
    assert "correct_handoff" not in {r.criterion for r in agent_part.results}  # bot only
    assert card.part("bot").passed is True
    assert Scorecard.from_dict(card.to_dict()) == card  # the stored JSON reads back whole
    stored = json.dumps(card.to_dict())
    assert "4111" not in stored and "################" in stored  # evidence is masked


CRITICAL_FORM = """form: critical
pass_score: 80
criteria:
  greeting: {weight: 85, company: Northwind Bank}
  verified_before_account_detail: {weight: 10, critical: true, details: ['account has']}
  empathy_on_complaint: {weight: 5}
"""


def test_score_leaves_out_what_does_not_apply_and_critical_failures_fail_the_part(tmp_path):
    form = load_qa_file(write(tmp_path, CRITICAL_FORM), "bank").form
    rec = record(
        GREETING,
        ("caller", "what's my balance", 5.0, 6.0),
        ("bot", "Your checking account has 2,415 dollars.", 7.0, 9.0),
    )
    part = score_call(rec, form).part("bot")
    assert [r.verdict for r in part.results] == [Verdict.PASS, Verdict.FAIL, Verdict.NA]
    assert part.score == round(100 * 85 / 95, 1)  # empathy does not apply: out of 95
    assert part.score >= form.pass_score  # high enough, but ...
    assert part.critical_failed and part.passed is False  # ... an unverified account detail
    fine = score_call(record(GREETING), form).part("bot")
    assert (fine.score, fine.passed) == (100.0, True)


def test_digit_runs_and_masking():
    assert digit_runs("It's 9-4-1-0-7, and 4 5 6 7.") == ["94107", "4567"]
    assert digit_runs("four five six seven dollars") == ["4567"]
    assert mask_digits("ZIP nine four one zero seven, or 1, 2, 3, 4, 5") == "ZIP #####, or #####"
    assert mask_digits("2,415 dollars on the 28th") == "2,415 dollars on the 28th"


FORM = """form: t
pass_score: 80
criteria:
  greeting:
    weight: 60
    company: Acme
  no_talk_over:
    weight: 40
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qa.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_form_loads(tmp_path):
    config = load_qa_file(write(tmp_path, FORM), "bank")
    assert [s.name for s in config.form.criteria] == ["greeting", "no_talk_over"]
    assert config.survey is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (FORM.replace("no_talk_over:", "no_talkover:"), 7, "did you mean 'no_talk_over'"),
        (FORM.replace("weight: 40", "weight: 30"), 3, "add up to 90, not 100"),
        (FORM.replace("    company: Acme\n", ""), 4, "criteria.greeting.company: Field required"),
        (FORM.replace("Acme", "Acme\n    compnay: x"), 7, "unknown key 'compnay'"),
        (FORM.replace("weight: 40", "weight: -5"), 8, "greater than 0"),
        (FORM.replace("pass_score: 80", "pass_score: 180"), 2, "less than or equal to 100"),
        (FORM + "survey:\n  question: q\n", 9, "survey.reprompt: Field required"),
        (FORM + "surveys: {}\n", 9, "unknown key 'surveys' in the form; did you mean 'survey'?"),
        (FORM.replace("weight: 40", "weight: 40\n    judge: llm"), 9, "has no LLM judge"),
        ("form: t\ncriteria: [\n", 3, "invalid YAML"),
    ],
)
def test_form_errors_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(QaFormError) as error:
        load_qa_file(path, "bank")
    assert str(error.value).startswith(f"{path}:{line}: ") and message in str(error.value)


def test_a_bad_regex_in_a_form_is_named(tmp_path):
    path = write(tmp_path, FORM.replace("company: Acme", "company: Acme\n    greetings: ['(hi']"))
    with pytest.raises(QaFormError, match=rf"^{path}:7: criteria.greeting.greetings.0: "):
        load_qa_file(path, "bank")


def test_shipped_forms_load_and_cover_every_criterion():
    for pack in ("bank", "telecom"):
        config = load_qa(pack)
        assert config is not None
        assert {s.name for s in config.form.criteria} == set(CRITERIA)
        assert sum(s.weight for s in config.form.criteria) == 100


class _Client:
    """Stands in for the LLM server: replies with the text given."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def chat(self, messages, max_tokens=120):
        self.messages = messages
        return self.reply


def test_llm_judge_answers_where_the_form_asks_and_the_rule_is_the_fallback(tmp_path):
    path = write(tmp_path, FORM.replace("company: Acme", "company: Acme\n    judge: llm"))
    form = load_qa_file(path, "bank").form
    rec = record(("bot", "Hello, Acme here.", 0.5, 2.0))
    client = _Client('Sure: {"verdict": "fail", "turns": [0, 99], "reason": "no greeting"}')
    result = score_call(rec, form, LLMJudge(client)).part("bot").results[0]
    assert (result.verdict, result.judge, result.explanation) == (
        Verdict.FAIL,
        "llm",
        "no greeting",
    )
    assert [e.turn for e in result.evidence] == [0]  # turn 99 does not exist
    assert "Acme" in client.messages[1]["content"]
    broken = score_call(rec, form, LLMJudge(_Client("I think it is fine"))).part("bot").results[0]
    assert (broken.verdict, broken.judge) == (Verdict.PASS, "rule")
    assert broken.explanation.startswith("LLM judge failed")
