"""Keeping a long-running server's native memory flat (glibc malloc).

What grew in the fault suite was not Python objects but the C heap under them: glibc gives
each thread that allocates under contention its own arena (up to 8 per core), and the
model threads (CTranslate2, onnxruntime, Piper) and the event loop's buffers leave each
arena holding freed pages it never hands back. Measured with ``scripts/bench_faults.py``
(docs/benchmarks.md): three fuzz runs grew RSS by 83 MB with glibc's defaults, 35 MB with two
arenas. So the server caps the arenas at start and, when a call ends, returns the free
pages at the top of every arena to the system (``malloc_trim``, in a worker thread: it
takes the allocator's lock for a few milliseconds). Elsewhere than glibc both do nothing.
"""

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (before the model threads start); False where not glibc.
    ``MALLOC_ARENA_MAX`` in the environment, if set, wins (the operator's choice)."""
    if _LIBC is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    ok = bool(_LIBC.mallopt(_M_ARENA_MAX, count))
    log.debug("malloc arenas capped at %d: %s", count, ok)
    return ok


def give_back() -> None:
    """Return the heap's free pages to the system (blocking: call it from a thread)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
