"""Model resolution: packaged weights by name (offline), a local directory, or a hub id.

The default of every option works offline from pinned packages. Online users may pass a
Hugging Face hub id instead; that is passed through to the library that downloads it.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from voicebot.errors import ModelNotFoundError
from voicebot.models.cache import is_prepared, join_parts, model_dir
from voicebot.models.registry import MODELS, ModelSpec, get_spec

log = logging.getLogger(__name__)

# Names faster-whisper downloads by itself (online only).
_WHISPER_SIZES = re.compile(r"^(tiny|base|small|medium|large)(\.en|-v[123]|-v3-turbo)?$|^turbo$")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

__all__ = [
    "MODELS",
    "ModelSpec",
    "ModelStatus",
    "list_models",
    "model_info",
    "prepare",
    "resolve_asr",
    "resolve_embeddings",
    "resolve_piper_voice",
]


def resolve_asr(name_or_path: str, *, prepare: bool = True) -> str:
    """What ``faster_whisper.WhisperModel`` should load for ``name_or_path``."""
    if name_or_path in MODELS and MODELS[name_or_path].kind == "asr":
        spec = MODELS[name_or_path]
        if spec.needs_preparation:
            if not prepare and not is_prepared(spec.name):
                raise ModelNotFoundError(
                    f"model {spec.name!r} is not prepared: run `voicebot models prepare`"
                )
            return str(join_parts(spec)[0])
        return str(spec.package_dirs()[0])
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        missing = [f for f in ("model.bin", "config.json") if not (path / f).exists()]
        if missing:
            raise ModelNotFoundError(
                f"{path} is not a CTranslate2 Whisper model directory: missing {', '.join(missing)}"
            )
        return str(path)
    if _HUB_ID.match(name_or_path) or _WHISPER_SIZES.match(name_or_path):
        log.warning("ASR model %r is not packaged: faster-whisper will download it", name_or_path)
        return name_or_path
    raise ModelNotFoundError(
        f"unknown ASR model {name_or_path!r}: use tiny.en or base (packaged), a CTranslate2 "
        "model directory, or a hub id such as Systran/faster-whisper-small"
    )


def resolve_piper_voice(name_or_path: str = "joe") -> tuple[Path, Path]:
    """(voice .onnx, its .onnx.json) for a packaged voice name or a path to an .onnx file."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".onnx":
        config = path.with_name(path.name + ".json")
        missing = [str(p) for p in (path, config) if not p.is_file()]
        if missing:
            raise ModelNotFoundError(f"Piper voice files not found: {', '.join(missing)}")
        return path, config
    spec = get_spec(name_or_path)
    if spec.kind != "tts":
        raise ModelNotFoundError(f"{name_or_path!r} is not a voice; try joe or a .onnx path")
    onnx = next(spec.package_dirs()[0].glob("*.onnx"))
    return onnx, onnx.with_name(onnx.name + ".json")


def resolve_embeddings(name_or_path: str = "minilm") -> str:
    """A sentence-transformers model directory (packaged or local) or a hub id."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    try:
        spec = get_spec(name_or_path)
    except ModelNotFoundError:
        if _HUB_ID.match(name_or_path):
            log.warning("embedding model %r is not packaged: it will be downloaded", name_or_path)
            return name_or_path
        raise
    return str(spec.package_dirs()[0])


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    installed: bool
    ready: bool  # installed, and prepared if it needs to be
    path: Path | None


def status(spec: ModelSpec) -> ModelStatus:
    try:
        dirs = spec.package_dirs()
    except ModelNotFoundError:
        return ModelStatus(spec, False, False, None)
    if spec.needs_preparation:
        prepared = is_prepared(spec.name)
        return ModelStatus(spec, True, prepared, model_dir(spec.name) if prepared else None)
    return ModelStatus(spec, True, True, dirs[0])


def list_models() -> list[ModelStatus]:
    return [status(spec) for spec in MODELS.values()]


def prepare(names: list[str] | None = None, *, progress: bool | None = None) -> list[str]:
    """Make the named models (default: all) ready; returns one line per model."""
    lines = []
    for spec in [get_spec(n) for n in names] if names else list(MODELS.values()):
        if spec.needs_preparation:
            path, joined = join_parts(spec, progress=progress)
            size = (path / "model.bin").stat().st_size
            lines.append(
                f"{spec.name}: joined {size:,} bytes into {path}"
                if joined
                else f"{spec.name}: already prepared at {path}"
            )
        else:
            lines.append(f"{spec.name}: ready at {spec.package_dirs()[0]}")
    return lines


def model_info(name: str) -> dict:
    """Where a model lives, its files and sizes, packages and licence."""
    spec = get_spec(name)
    state = status(spec)
    info: dict = {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "packages": list(spec.packages),
        "licence": spec.licence,
        "installed": state.installed,
        "ready": state.ready,
        "path": str(state.path) if state.path else None,
    }
    if state.path is not None:
        files = {p.name: p.stat().st_size for p in sorted(state.path.rglob("*")) if p.is_file()}
        info["files"] = files
        info["total_bytes"] = sum(files.values())
    return info
