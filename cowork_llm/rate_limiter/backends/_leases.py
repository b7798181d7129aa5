"""Leases for ``rate_limit.max_concurrent_scope = "shared"``: at most ``max_concurrent``
requests in flight across every member of a ``sqlite`` or ``redis`` group.

An admission takes a lease in the shared store (atomically with the start it records);
the slot's release gives it back. A lease expires :data:`LEASE_SECONDS` after it was
taken or last renewed, so the slots of a member that was killed (SIGKILL, a lost host)
come back by themselves. While a member holds leases, a daemon thread renews them every
:data:`RENEW_EVERY_SECONDS`: a long request or stream keeps its slot for as long as it
runs; a member that is stopped (SIGSTOP) or cut off stops renewing and loses it.
"""

import logging
import threading
import uuid
from typing import Callable, List, Optional, Set

__all__ = ["LeaseKeeper", "LEASE_SECONDS", "RENEW_EVERY_SECONDS"]

logger = logging.getLogger(__name__)

#: How long a lease counts without renewal: how long a dead member's slot stays taken.
LEASE_SECONDS = 30.0
#: How often held leases are renewed (three chances before one expires).
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3


class LeaseKeeper:
    """The leases this member holds, renewed in the background through ``renew`` (a
    callable taking the lease ids). A failed renewal is logged, never raised: a lease
    that expires while its request runs lets the group start one more than the cap,
    which is why renewal runs three times per lease."""

    def __init__(self, renew: Callable[[List[str]], None], description: str,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._renew = renew
        self._description = description
        self.lease_seconds = lease_seconds
        self._held: Set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def hold(self, lease: str) -> None:
        with self._lock:
            self._held.add(lease)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cowork-llm-lease-renewal",
                                                daemon=True)
                self._thread.start()

    def drop(self, lease: str) -> bool:
        """Forget ``lease``; False when it was not held (released twice)."""
        with self._lock:
            if lease not in self._held:
                return False
            self._held.discard(lease)
            return True

    def held(self) -> List[str]:
        with self._lock:
            return list(self._held)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            leases = self.held()
            if not leases:
                continue
            try:
                self._renew(leases)
            except Exception as error:  # noqa: BLE001 - a daemon thread must not die on it
                logger.warning("could not renew %d concurrency lease(s) in %s: %s; they "
                               "expire in %.0f s unless a renewal succeeds", len(leases),
                               self._description, error, self.lease_seconds)

    def close(self) -> None:
        self._stop.set()
