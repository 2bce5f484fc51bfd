"""The QA form's LLM judge against a real local server (``voicebot llm serve``, SmolLM2)."""

from tests.test_llm import config, llm_server  # noqa: F401 (the server fixture)
from tests.test_qa import FORM, record, write
from voicebot.dialog.llm import LLMClient
from voicebot.qa.criteria import Verdict
from voicebot.qa.form import load_qa_file
from voicebot.qa.scorecard import LLMJudge, score_call


def test_llm_judge_on_a_real_server_answers_or_leaves_it_to_the_rule(llm_server, tmp_path):  # noqa: F811
    form = load_qa_file(write(tmp_path, FORM.replace("Acme", "Acme\n    judge: llm")), "bank").form
    judge = LLMJudge(LLMClient(config(llm_server)))
    calls = [
        ("Hello, thank you for calling Acme. How can I help?", Verdict.PASS),
        ("What do you want?", Verdict.FAIL),
    ]
    for text, by_rule in calls:
        rec = record(("bot", text, 0.5, 2.0), ("caller", "hi", 3.0, 4.0))
        result = score_call(rec, form, judge).part("bot").results[0]
        if result.judge == "llm":  # a model that follows the JSON instruction
            assert result.verdict in tuple(Verdict)
            assert all(e.turn in (0, 1) for e in result.evidence)
        else:  # a small model that answers in prose: the rule decides, and says so
            assert result.explanation.startswith("LLM judge failed; ")
            assert result.verdict == by_rule
