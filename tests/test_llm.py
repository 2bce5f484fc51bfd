"""The optional LLM backend against a real local OpenAI-compatible server (``voicebot llm
serve``: llama.cpp serving the packaged SmolLM2-135M), started and stopped by these tests."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest

from voicebot.dialog.llm import LLMClient, LLMConfig, grounded
from voicebot.dialog.pack import load_pack

FAQ = (
    "International transfers cost 15 dollars each and arrive in one to three business days.",
    "The Northwind mobile app is free on iPhone and Android and can freeze a card instantly.",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    """``voicebot llm serve``: llama.cpp's C++ server (xllamacpp) on the packaged SmolLM2."""
    port = free_port()
    log = (tmp_path_factory.mktemp("llm") / "server.log").open("w+b")  # a pipe would fill up
    server = subprocess.Popen(
        [sys.executable, "-m", "voicebot", "llm", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    while True:  # until it answers, or the process has died (no clock: a busy machine waits)
        try:
            urllib.request.urlopen(f"{base}/models", timeout=5).read()
            break
        except OSError:
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"voicebot llm serve exited: {log.read()[-2000:]!r}")
            time.sleep(0.2)
    yield base
    server.terminate()
    server.wait(timeout=30)
    log.close()


def config(base_url: str) -> LLMConfig:
    """The tests' client: a patient timeout, since a busy machine is slow, not broken."""
    return LLMConfig(base_url, "smollm2", timeout_s=120)


def test_grounding_check():
    assert grounded("International transfers cost 15 dollars each.", FAQ)
    assert not grounded("The capital of France is Paris.", FAQ)
    assert not grounded("International transfers cost 20 dollars.", FAQ)  # wrong number
    assert not grounded("The mobile app is not free.", FAQ)  # negation is content


def test_answers_from_the_faq_and_refuses_the_rest(llm_server):
    client = LLMClient(config(llm_server))
    answer = client.answer("how much does an international transfer cost", FAQ, "a bank")
    assert answer is not None and "15" in answer
    assert client.answer("what is the capital of france", FAQ, "a bank") is None


def test_summary_for_the_agent(llm_server):
    client = LLMClient(config(llm_server))
    summary = client.summarize(
        [
            "caller: I lost my card",
            "bot: which card?",
            "caller: the one ending 4567",
            "bot: it is blocked",
            "caller: I want to talk to a person",
        ]
    )
    assert len(summary.split()) >= 5


def test_dialog_answers_uncovered_questions_with_the_llm(llm_server, monkeypatch, tmp_path):
    from voicebot.dialog.embeddings import SentenceEmbedder
    from voicebot.dialog.intent_classifier import IntentClassifier
    from voicebot.dialog.manager import DialogManager
    from voicebot.services.demo_bank import DemoBank

    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEBOT_LLM_BASE_URL", llm_server)
    pack = load_pack("bank")
    classifier = IntentClassifier.for_pack(pack, SentenceEmbedder())
    question = "what is the monthly fee on checking"
    assert classifier.classify(question).intent == "out_of_scope"  # no intent covers it
    llm = LLMClient(replace(LLMConfig.from_env(), timeout_s=120))
    dialog = DialogManager(pack, classifier, DemoBank(), llm=llm)
    reply = dialog.handle_text(question)
    assert reply.kind == "answer" and reply.text != pack.fallback
    assert grounded(reply.text, pack.faq)
    # An LLM that is down never breaks the call: the caller hears the escalation ladder's
    # first rung, a guess to confirm or a request to rephrase.
    down = LLMClient(LLMConfig(f"http://127.0.0.1:{free_port()}/v1", "x", timeout_s=2))
    reply = DialogManager(pack, classifier, DemoBank(), llm=down).handle_text(question)
    if reply.decision.action == "confirm":
        assert reply.kind == "question" and reply.text.startswith("Did you want to")
    else:
        assert reply.kind == "fallback" and reply.text == pack.fallback


def test_no_llm_configured(monkeypatch):
    monkeypatch.delenv("VOICEBOT_LLM_BASE_URL", raising=False)
    assert LLMConfig.from_env() is None
    assert os.environ.get("VOICEBOT_LLM_BASE_URL") is None
