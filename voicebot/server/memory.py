"""Keeping a long-running server's native memory flat (glibc malloc).

What grew in the fault suite was not Python objects but the C heap under them: glibc gives
each thread that allocates under contention its own arena (up to 8 per core), and the
model threads (CTranslate2, onnxruntime, Piper) and the event loop's buffers leave each
arena holding freed pages it never hands back. Measured with ``scripts/bench_faults.py``
(docs/benchmarks.md): three fuzz runs grew RSS by 83 MB with glibc's defaults, 35 MB with two
arenas. So the server caps the arenas at start and, when a call ends, returns the free
pages at the top of every arena to the system (``malloc_trim``, in a worker thread: it
takes the allocator's lock for a few milliseconds). Elsewhere than glibc both do nothing.

Freed is not the same as unreferenced: each closed WebSocket leaves a reference cycle
(websockets' protocol object and its parser generator), which only the cyclic collector
frees, and its full pass waits until a quarter as many new objects as the ~200k the models
and libraries hold have survived. 300 idle sockets left 12 MB of Python arenas pinned that
way. So ``reclaim_soon`` runs a collection and the trim shortly after a line ends, once for
a whole burst of ends, and the server freezes what it holds at start (``settle``), so that
collection skips those 200k objects and takes a few milliseconds. The collector's own
passes keep their cadence: resetting its count after the freeze made full passes frequent,
and a call's voice-to-voice ~100 ms slower (``scripts/bench_load.py``, docs/benchmarks.md).
"""

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import weakref

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
ARENAS = 2
RECLAIM_DELAY_S = 1.0  # a burst of lines ending within this is reclaimed once


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


def settle() -> None:
    """Collect, then freeze everything the process holds now (call once the models are
    loaded): collections from here on skip it, so ``reclaim`` costs little."""
    gc.collect()
    gc.freeze()


def reclaim() -> None:
    """Free unreachable cycles and return the heap's free pages (blocking: from a thread)."""
    gc.collect()
    give_back()


_pending: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.TimerHandle]" = (
    weakref.WeakKeyDictionary()
)


def reclaim_soon() -> None:
    """``reclaim`` in a worker thread ``RECLAIM_DELAY_S`` from now, unless one is due already
    (call it from the event loop, whenever a line ends)."""
    loop = asyncio.get_running_loop()
    if loop in _pending:
        return

    def run() -> None:
        del _pending[loop]
        loop.run_in_executor(None, reclaim)

    _pending[loop] = loop.call_later(RECLAIM_DELAY_S, run)
