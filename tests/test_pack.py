import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicebot.dialog.pack import PACKS_DIR, load_pack
from voicebot.errors import PackError
from voicebot.handoff.config import QueueConfig

DATA = Path(__file__).parent / "data"
BANK = [
    "check_balance",
    "recent_transactions",
    "report_lost_or_stolen_card",
    "card_declined",
    "report_fraud",
    "dispute_transaction",
    "activate_card",
    "reset_pin",
    "make_payment",
    "payment_due_date",
    "increase_credit_limit",
    "transfer_money",
    "update_address",
    "branch_hours",
    "open_account",
    "close_account",
    "speak_to_agent",
    "complaint",
    "affirm",
    "deny",
    "goodbye",
]
TELECOM = [
    "check_bill",
    "pay_bill",
    "check_data_usage",
    "change_plan",
    "report_outage",
    "roaming",
    "replace_sim",
    "cancel_service",
    "upgrade_device",
    "speak_to_agent",
    "complaint",
    "affirm",
    "deny",
    "goodbye",
]


def test_mini_pack_loads():
    pack = load_pack(DATA / "mini_pack.yaml")
    assert pack.name == "mini"
    assert list(pack.intents) == ["check_balance", "goodbye"]
    assert pack.intents["goodbye"].end_call and not pack.intents["check_balance"].end_call
    assert pack.no_input[-1].startswith("I'll end the call")


@pytest.mark.parametrize(("name", "labels"), [("bank", BANK), ("telecom", TELECOM)])
def test_packs_have_exactly_the_required_intents(name, labels):
    pack = load_pack(name)
    assert sorted(pack.intents) == sorted(labels)
    for intent in pack.intents.values():
        assert len(set(intent.examples)) >= 25, intent.name
    assert [i.name for i in pack.intents.values() if i.end_call] == ["goodbye"]
    assert pack.path == PACKS_DIR / f"{name}.yaml"


def write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


GOOD_HEAD = """name: p
greeting: hi
fallback: what?
no_input: [hello]
"""


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("intents:\n  a:\n    examples: [x]\n", 7, "missing required key 'response'"),
        (
            "intents:\n  a:\n    examples: []\n    response: r\n",
            7,
            "examples must be a non-empty list",
        ),
        ("intents:\n  a:\n    examples: [x, X]\n    response: r\n", 7, "duplicate example"),
        ("intents:\n  a: [1, 2]\n", 6, "intent 'a' must be a mapping"),
        ("intents:\n  out_of_scope:\n    examples: [x]\n    response: r\n", 7, "reserved"),
        (
            "intents:\n  a:\n    examples: [x]\n    response: r\n    end_call: maybe\n",
            9,
            "end_call",
        ),
        ("intents: {}\n", 5, "'intents' is empty"),
        (
            "intents:\n  a:\n    examples: [x]\n    respnse: r\n",
            8,
            "unknown key 'respnse' in intent 'a'; did you mean 'response'?",
        ),
        ("greting: hello\nintents: {}\n", 5, "unknown key 'greting' in the pack"),
        ("intents:\n  a:\n    examples: [x\n", None, "invalid YAML"),
        (
            "transfer_to: agents<1>\nintents:\n  a:\n    examples: [x]\n    response: r\n",
            5,
            "transfer_to: 'agents<1>' is neither an E.164 number",
        ),
    ],
)
def test_malformed_packs_name_file_line_and_reason(tmp_path, body, line, reason):
    path = write(tmp_path, GOOD_HEAD + body)
    with pytest.raises(PackError) as err:
        load_pack(path)
    message = str(err.value)
    assert str(path) in message and reason in message
    if line is not None:
        assert f"{path}:{line}:" in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the pack is empty"),
        (b"# only a comment\n", "the pack is empty"),
        (b"name: p\ngreeting: caf\xe9\n", ":2: not UTF-8 text (byte 0xe9)"),
    ],
)
def test_empty_or_undecodable_pack_is_a_pack_error(tmp_path, content, reason):
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(PackError, match=re.escape(reason)):
        load_pack(path)


def test_a_pack_names_its_agents_line(tmp_path):
    body = "transfer_to: tel:+1 415 555 0100\nintents:\n  a:\n    examples: [x]\n    response: r\n"
    pack = load_pack(write(tmp_path, GOOD_HEAD + body))
    assert (pack.transfer_to.kind, pack.transfer_to.address) == ("number", "+14155550100")
    assert load_pack("bank").transfer_to is None


def test_a_pack_may_name_a_larger_model_for_digit_answers(tmp_path):
    body = (
        "recognizer:\n  vocabulary: [Northwind Bank]\n  digits_model: base\n"
        "intents:\n  a:\n    examples: [x]\n    response: r\n"
    )
    pack = load_pack(write(tmp_path, GOOD_HEAD + body))
    assert (pack.vocabulary, pack.digits_model) == (("Northwind Bank",), "base")
    assert load_pack("bank").digits_model is None
    listed = body.replace("digits_model: base", "digits_model: [1]")
    with pytest.raises(PackError, match="digits_model"):
        load_pack(write(tmp_path, GOOD_HEAD + listed))


def test_missing_top_level_key(tmp_path):
    path = write(tmp_path, "name: p\nintents:\n  a:\n    examples: [x]\n    response: r\n")
    with pytest.raises(PackError, match="missing required key 'greeting'"):
        load_pack(path)


def test_unknown_pack_name_lists_known_packs():
    with pytest.raises(PackError, match=r"unknown pack 'nope'.*bank"):
        load_pack("nope")


FLOW_INTENT = "intents:\n  a:\n    examples: [x]\n    flow: f\n"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("intents:\n  a:\n    examples: [x]\n    flow: nope\n", "unknown flow 'nope'"),
        (
            FLOW_INTENT
            + "flows:\n  f:\n    action: x\n    done: d\n    slots:\n"
            + "      - {name: s, type: colour, prompt: p, reprompt: r}\n",
            "unknown slot type 'colour'",
        ),
        (FLOW_INTENT + "flows:\n  f:\n    done: d\n", "missing required key 'action'"),
        (
            FLOW_INTENT + "flows:\n  f:\n    verify: true\n    action: balances\n    done: d\n",
            "needs verification, but the pack has no 'verification' section",
        ),
        (
            FLOW_INTENT + "flows:\n  f:\n    action: block_crad\n    done: d\n",
            "unknown action 'block_crad' (known: ",
        ),
        (  # a typo that would leave the flow unverified
            FLOW_INTENT + "flows:\n  f:\n    verfy: true\n    action: balances\n    done: d\n",
            "unknown key 'verfy' in flow 'f'; did you mean 'verify'?",
        ),
        (
            FLOW_INTENT + "flows:\n  f:\n    action: balances\n    done: 'You have {balance}'\n",
            "done uses {balance}; known here: balances",
        ),
        (
            FLOW_INTENT + "flows:\n  f:\n    action: open_case\n    confirm: 'Open it {'\n"
            "    done: d\n",
            "confirm: Single '{' encountered",
        ),
        (
            FLOW_INTENT + "flows:\n  f:\n    action: block_card\n    done: d\n",
            "action 'block_card' needs the slot(s) card_last_four",
        ),
    ],
)
def test_malformed_flows(tmp_path, body, reason):
    path = write(tmp_path, GOOD_HEAD + body)
    with pytest.raises(PackError, match=re.escape(reason)) as err:
        load_pack(path)
    assert str(err.value).startswith(f"{path}:")


def test_bank_flows_reference_known_actions():
    from voicebot.dialog.actions import ACTIONS

    pack = load_pack("bank")
    assert pack.verification is not None and pack.faq
    for flow in pack.flows.values():
        assert flow.action in ACTIONS, flow.name


@pytest.mark.parametrize("name", ["bank", "telecom"])
def test_no_static_answer_asks_a_question_the_bot_cannot_take_up(name):
    """A follow-up question ("Shall I send it?") needs a flow to act on the answer."""
    for intent in load_pack(name).intents.values():
        if intent.flow is None and intent.response.endswith("?"):
            assert intent.response.endswith("What else can I help you with?"), intent.name


QUEUE_HEAD = GOOD_HEAD + "intents:\n  a:\n    examples: [x]\n    response: y\n"


def test_pack_queue_settings_are_validated(tmp_path):
    path = write(tmp_path, QUEUE_HEAD + "queue:\n  queue_timeout_s: 45\n  hold_message: Hold on.\n")
    queue = load_pack(path).queue
    assert queue.queue_timeout_s == 45 and queue.hold_message == "Hold on."
    assert queue.hold_every_s == QueueConfig().hold_every_s  # the rest stays at the defaults
    music = tmp_path / "hold.wav"
    sf.write(music, np.zeros(800, np.float32), 16000)
    assert load_pack(write(tmp_path, QUEUE_HEAD + f"queue:\n  hold_audio: {music}\n")).queue
    for body, reason in [
        ("queue:\n  hold_evry_s: 5\n", "unknown queue setting.*hold_evry_s"),
        ("queue:\n  queue_timeout_s: -1\n", "positive number"),
        ("queue:\n  callback_attempts: 1.5\n", "whole number"),
        ("queue:\n  hold_message: ''\n", "non-empty string"),
        ("queue:\n  hold_audio: /nowhere/music.wav\n", "no audio file.*or: silence, chime"),
    ]:
        with pytest.raises(PackError, match=reason):
            load_pack(write(tmp_path, QUEUE_HEAD + body))
