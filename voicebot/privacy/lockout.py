"""Verification lockout: after N failed verifications in a day, a caller is not asked again.

Two tries per call would let anyone guess a ZIP code over a few dozen calls. Failures are
counted across calls, per caller ID and per customer being verified (so withholding the
caller ID does not reset the count), over the last 24 hours: in the database when the
process has one (every process sharing it sees the same count), else in memory. Keys are
stored hashed: the lockout table holds no phone number. The dialog hands a locked-out
caller to a person with the reason ``verification_locked``.
"""

import hashlib
import threading
import time
from collections import defaultdict

from voicebot.store.store import Store

LOCK_WINDOW_S = 24 * 3600.0


def subjects_of(caller_id: str | None, customer_id: str | None) -> list[str]:
    """The hashed keys a verification attempt counts against."""
    keys = [f"caller:{caller_id}" if caller_id else "", f"customer:{customer_id or ''}"]
    return [hashlib.sha256(k.encode()).hexdigest() for k in keys if not k.endswith(":")]


class VerificationLockout:
    """Counts failed verifications; ``locked`` once a subject has ``max_failures`` today."""

    def __init__(self, store: Store | None = None, max_failures: int = 3) -> None:
        self._store = store
        self.max_failures = max_failures
        self._memory: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def locked(self, caller_id: str | None, customer_id: str | None) -> bool:
        subjects = subjects_of(caller_id, customer_id)
        return bool(subjects) and self._count(subjects) >= self.max_failures

    def failed(self, caller_id: str | None, customer_id: str | None) -> bool:
        """Count one failure; True if the caller is now locked out."""
        subjects = subjects_of(caller_id, customer_id)
        if not subjects:
            return False
        now = time.time()
        if self._store is not None:
            self._store.add_failure(subjects, now)
        else:
            with self._lock:
                for subject in subjects:
                    self._memory[subject].append(now)
        return self._count(subjects) >= self.max_failures

    def _count(self, subjects: list[str]) -> int:
        since = time.time() - LOCK_WINDOW_S
        if self._store is not None:
            return self._store.failures_since(subjects, since)
        with self._lock:
            for subject in subjects:
                self._memory[subject] = [t for t in self._memory[subject] if t >= since]
            return max(len(self._memory[s]) for s in subjects)
