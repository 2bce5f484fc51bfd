"""The model cache, and assembling split weights into it: once, size-checked, crash- and race-safe.

Whisper base ships as two packages (the registry's per-file size limit), but CTranslate2 wants
one ``model.bin``. The join writes a temp file beside the target and renames it at the end,
under an exclusive lock, and only then writes a completion marker: an interrupted join leaves
no marker and is simply redone, and two processes never join at the same time.
"""

import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from voicebot.errors import ModelPreparationError
from voicebot.models.registry import ModelSpec

_MARKER = ".complete"
_LOCK = ".lock"
_PARTIAL = "model.bin.partial"
_CHUNK = 8 << 20


def cache_dir() -> Path:
    """``$VOICEBOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/voicebot``, else ``~/.cache/voicebot``."""
    if env := os.environ.get("VOICEBOT_CACHE_DIR"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "voicebot"


def model_dir(name: str) -> Path:
    """Where a prepared model lives: ``<cache>/models/<name>/``."""
    return cache_dir() / "models" / name


def is_prepared(spec: ModelSpec) -> bool:
    """Marker present and ``model.bin`` of the expected size: cheap enough for every call."""
    target = model_dir(spec.name)
    model = target / "model.bin"
    return (
        (target / _MARKER).is_file()
        and model.is_file()
        and model.stat().st_size == spec.joined_bytes
    )


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` so concurrent preparations wait, not collide."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_path.open("w")
    except OSError as exc:
        raise ModelPreparationError(
            f"cannot write the model cache {lock_path.parent}: {exc}; "
            "set VOICEBOT_CACHE_DIR to a writable directory"
        ) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _parts(spec: ModelSpec) -> tuple[list[Path], list[Path]]:
    """(package dirs, weight parts in package order), checked against the expected size."""
    dirs = spec.package_dirs()
    parts = [p for d in dirs for p in sorted(d.glob("model.bin.part*"))]
    reinstall = f"reinstall {' '.join(spec.packages)}"
    if len(parts) != len(spec.packages):
        raise ModelPreparationError(
            f"model {spec.name!r}: expected {len(spec.packages)} weight parts, found "
            f"{len(parts)}; {reinstall}"
        )
    total = sum(p.stat().st_size for p in parts)
    if total != spec.joined_bytes:
        raise ModelPreparationError(
            f"model {spec.name!r}: the weight parts hold {total:,} bytes, expected "
            f"{spec.joined_bytes:,}; {reinstall}"
        )
    return dirs, parts


def join_parts(spec: ModelSpec, *, progress: bool | None = None) -> tuple[Path, bool]:
    """Assemble ``spec`` in the cache if needed; returns (model dir, whether it joined now).

    ``progress``: show a byte progress bar; None shows it when stderr is a terminal.
    """
    target = model_dir(spec.name)
    if is_prepared(spec):
        return target, False
    dirs, parts = _parts(spec)
    with locked(target / _LOCK):
        if is_prepared(spec):  # another process finished while we waited for the lock
            return target, False
        (target / _MARKER).unlink(missing_ok=True)
        for small in dirs[0].iterdir():  # config, tokenizer, vocabulary beside the weights
            if small.is_file() and not small.name.startswith("model.bin"):
                shutil.copyfile(small, target / small.name)
        tmp = target / _PARTIAL  # a stale one from a crash is simply overwritten
        try:
            _concatenate(parts, tmp, spec, progress)
        except OSError as exc:  # typically a full disk: the user can act on it
            tmp.unlink(missing_ok=True)
            raise ModelPreparationError(f"model {spec.name!r}: cannot write {tmp}: {exc}") from exc
        size = tmp.stat().st_size
        if size != spec.joined_bytes:  # a part changed under us since the size check
            tmp.unlink()
            raise ModelPreparationError(
                f"model {spec.name!r}: joined {size:,} bytes, expected {spec.joined_bytes:,}; "
                f"reinstall {' '.join(spec.packages)}"
            )
        os.replace(tmp, target / "model.bin")
        (target / _MARKER).write_text(f"{spec.joined_bytes}\n")
    return target, True


def _concatenate(parts: list[Path], out_path: Path, spec: ModelSpec, progress: bool | None) -> None:
    """Copy ``parts`` one after another into ``out_path`` and flush it to disk."""
    with (
        out_path.open("wb") as out,
        tqdm(
            total=spec.joined_bytes,
            unit="B",
            unit_scale=True,
            desc=f"joining {spec.name}",
            disable=not (sys.stderr.isatty() if progress is None else progress),
        ) as bar,
    ):
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
