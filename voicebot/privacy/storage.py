"""Where call data lives on disk, kept private: files 0600 in folders 0700.

Recordings, transcripts, the spool and the SQLite database hold what callers said; on a
shared machine nobody but the service's own user may read them, whatever the umask.
"""

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700 (``mkdir -p`` would give the
    parents the umask's mode); existing folders are left as they are."""
    target = folder = Path(path)
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another thread or process
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    return target


def open_private(path: str | Path, mode: str = "wb") -> IO:
    """Open ``path`` for writing as an owner-only file (0600), its folder made 0700."""
    path = Path(path)
    private_dir(path.parent)
    access = os.O_RDWR if "+" in mode else os.O_WRONLY
    fd = os.open(path, access | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode through O_CREAT
    return os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))


def create_private(path: str | Path) -> Path:
    """Make sure ``path`` exists as an owner-only file (e.g. before SQLite opens it, so its
    -wal and -shm files, which SQLite creates with the database's mode, are private too)."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return path
