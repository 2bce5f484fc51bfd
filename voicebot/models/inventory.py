"""What is installed and ready, making the known models ready, and describing one in detail.

Backs ``voicebot models list|prepare|info`` so a user can see, before a call fails, which
package is missing, whether the split weights are joined, and under which licence each runs.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.errors import ModelNotFoundError
from voicebot.models.cache import is_prepared, join_parts, model_dir
from voicebot.models.registry import MODELS, ModelSpec, get_spec


@dataclass(frozen=True)
class ModelStatus:
    """A known model's state on this machine."""

    spec: ModelSpec
    installed: bool  # every package importable
    prepared: bool  # ready to load: installed, and joined into the cache if it needs that
    path: Path | None  # the directory to load from, once prepared


def model_status(spec: ModelSpec) -> ModelStatus:
    """Check ``spec`` without changing anything (no join, no download)."""
    try:
        dirs = spec.package_dirs()
    except ModelNotFoundError:
        return ModelStatus(spec, installed=False, prepared=False, path=None)
    if not spec.needs_preparation:
        return ModelStatus(spec, installed=True, prepared=True, path=dirs[0])
    prepared = is_prepared(spec)
    return ModelStatus(
        spec, installed=True, prepared=prepared, path=model_dir(spec.name) if prepared else None
    )


def list_models() -> list[ModelStatus]:
    """Every known model, in registry order, with its state."""
    return [model_status(spec) for spec in MODELS.values()]


def prepare(names: list[str] | None = None, *, progress: bool | None = None) -> list[str]:
    """Make the named models (default: all known) ready to load; one report line per model.

    Split weights are joined into the cache (once); other models are only checked to be
    installed, raising ModelNotFoundError naming the missing package. ``progress``: show a
    progress bar while joining; None shows it when stderr is a terminal.
    """
    lines = []
    for spec in [get_spec(n) for n in names] if names else list(MODELS.values()):
        if not spec.needs_preparation:
            lines.append(f"{spec.name}: ready at {spec.package_dirs()[0]}")
            continue
        path, joined = join_parts(spec, progress=progress)
        if joined:
            lines.append(f"{spec.name}: joined {spec.joined_bytes:,} bytes into {path}")
        else:
            lines.append(f"{spec.name}: already prepared at {path}")
    return lines


def model_info(name: str) -> dict[str, Any]:
    """Where a model lives, its files and sizes, packages, licence and (Whisper) config keys."""
    state = model_status(get_spec(name))
    spec, path = state.spec, state.path
    files: dict[str, int] = {}
    if path is not None:
        for file in sorted(path.rglob("*")):
            if file.is_file() and not file.name.startswith("."):  # skip markers and locks
                files[str(file.relative_to(path))] = file.stat().st_size
    info: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "packages": list(spec.packages),
        "licence": spec.licence,
        "installed": state.installed,
        "prepared": state.prepared,
        "path": str(path) if path else None,
        "files": files,
        "total_bytes": sum(files.values()),
    }
    if path is not None and spec.kind == "asr" and "config.json" in files:
        info["config"] = _summarize(json.loads((path / "config.json").read_text()))
    return info


def _summarize(config: dict[str, Any]) -> dict[str, Any]:
    """Config values, with long lists (token ids, language ids) shown as their length."""
    return {
        key: f"{len(value)} entries" if isinstance(value, list | dict) else value
        for key, value in config.items()
    }
