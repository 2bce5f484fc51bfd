"""Worker leases: several processes share one database, and every call is accounted for.

Each process that records calls (``voicebot serve``, ``voicebot call``) is a *worker*: a
random id, and a lease in the ``workers`` table that it renews every ``ttl_s / 3``. Each
live call it writes is owned by it (``live_calls``) until the call ends. A worker whose
lease has run out is dead (killed, crashed, its machine gone): the calls it owned are
marked ``interrupted`` with the time of their last write, and the bot turn that was
playing becomes their last turn (``Store.mark_interrupted``). Who marks them: every worker,
at its start-up (which also takes live calls nobody owns, left by a version without
leases) and at each renewal, so a crash is accounted for within ``ttl_s`` while any
worker runs. A worker never marks the calls of one whose lease holds.

A worker that finds the lease of a worker of its own machine whose process is gone (a
restart after a kill -9 or a crash) ends that lease at once, rather than wait ``ttl_s``.

A worker cut off from the database longer than ``ttl_s`` may find its calls marked while
it was still serving them; its next write of each call puts the truth back. Workers'
clocks must agree to well within ``ttl_s`` (NTP). The API, for the servers behind a load
balancer and the supervisor's view: ``Store.renew_lease``, ``Store.live_workers``,
``Store.mark_interrupted``, ``Store.end_lease``.
"""

import logging
import os
import secrets
import socket
import threading

from sqlalchemy.exc import SQLAlchemyError

from voicebot.store.store import Store, this_host

log = logging.getLogger(__name__)

LEASE_TTL_S = 30.0  # longer than a database hiccup (a lock, a fail-over) should last


class WorkerLease:
    """This process's lease: ``renew()`` before writing any call, ``start()`` once older
    processes' spooled calls are stored, ``stop()`` after the last write."""

    def __init__(self, store: Store, *, ttl_s: float = LEASE_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.worker_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        """Hold the lease ``ttl_s`` more (raises if the database cannot be written)."""
        self.store.renew_lease(self.worker_id, self.ttl_s)

    def start(self) -> list[str]:
        """Mark the calls that dead workers left live (and ownerless ones) interrupted, then
        renew and look again in the background. Returns the calls marked now."""
        self.renew()
        self._end_gone()
        recovered = self.store.mark_interrupted(ownerless=True)
        if recovered:
            log.warning(
                "%d call(s) left live by a process that died are marked interrupted: %s",
                len(recovered),
                ", ".join(recovered[:10]),
            )
        self._thread = threading.Thread(target=self._run, name="voicebot-lease", daemon=True)
        self._thread.start()
        return recovered

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
                self._end_gone()
                if marked := self.store.mark_interrupted():
                    log.warning("calls of a worker that died, marked interrupted: %s", marked)
            except SQLAlchemyError as exc:  # the database is away: try again next time
                if not failing:
                    log.warning("worker lease not renewed (retrying): %s", exc)
                failing = True
                continue
            if failing:
                log.warning("worker lease renewed again")
            failing = False

    def _end_gone(self) -> None:
        """End the leases of this machine's workers whose process is no more."""
        host = this_host()
        for worker in self.store.live_workers():
            if worker["host"] == host and not _running(worker["pid"]):
                log.warning("worker %s is gone (no process %d)", worker["worker_id"], worker["pid"])
                self.store.end_lease(worker["worker_id"])

    def stop(self) -> None:
        """Give the lease up: this worker's calls have all been written."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.store.end_lease(self.worker_id)
        except SQLAlchemyError as exc:  # it runs out by itself
            log.warning("worker lease not given up: %s", exc)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True
