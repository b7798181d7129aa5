"""First come, first served between processes: the shared ticket queue of the ``sqlite``
and ``redis`` backends.

Inside a process the :class:`~cowork_llm.rate_limiter.RateLimiter` is FIFO and only the
head of its queue asks the backend. Between processes a bucket alone has no order: when
the interval ended, whichever head asked first got the slot (measured: one process
waited 30 s with 4 processes at a 2 s interval, against a bound of 8 s). So a head
asking for the first time takes a *ticket* in the shared store, and only the oldest
live ticket may put into the buckets; the others are told to ask again in
:data:`QUEUE_POLL_SECONDS`. Each process holds at most one ticket per limiter (only its
head asks), so a request waits for at most one admission per other waiting process.

A ticket leaves the queue when its head is admitted, when the head gives up
(:meth:`~cowork_llm.rate_limiter.backends.LimiterBackend.withdraw`: acquire timeout,
KeyboardInterrupt, ``close()``), or when it goes stale: every ask refreshes the ticket's
heartbeat, and a ticket not refreshed for :data:`STALE_TICKET_SECONDS` (its process
died or hung) is removed by the next member that looks. A member whose ticket was
removed that way just takes a new one, at the back.

The queue decides the order only; the spacing is still the buckets' (atomic on their
own), so a race in the queue (a ticket going stale just as it is admitted) can reorder
two starts but never bring them closer than the interval.
"""

import itertools
import logging
import os
import threading
import uuid
from abc import abstractmethod
from typing import Dict, List, Mapping, Optional, Tuple, Type

from pyrate_limiter import StateBucket
from pyrate_limiter.abstracts.bucket import AbstractBucket

from ...config._sections import RateLimitConfig
from ...errors import LimiterBackendError
from .base import BucketBackend

__all__ = ["QueuedBackend", "STALE_TICKET_SECONDS", "QUEUE_POLL_SECONDS"]

logger = logging.getLogger(__name__)

#: A ticket whose heartbeat is older than this belongs to a process that died or hangs;
#: whoever finds it removes it. Far above the gap between two asks of a live head
#: (:data:`QUEUE_POLL_SECONDS` behind others; at the front, the bucket's wait, which
#: extends the heartbeat by as much), so a busy machine does not lose its place; short
#: enough that a killed process holds the group up for a few seconds only.
STALE_TICKET_SECONDS = 5.0
#: How often a head that is not at the front of the shared queue asks again. Each ask is
#: one Redis script, or one short transaction under the SQLite file lock (measured cost:
#: BENCHMARKS.md, "Limiter accuracy").
QUEUE_POLL_SECONDS = 0.02
# Ghost tickets remembered per backend (one per failed ask; more would be a store down
# for long, whose tickets have gone stale anyway).
_MAX_GHOSTS = 64


class QueuedBackend(BucketBackend):
    """A :class:`BucketBackend` whose members are admitted in the order their heads first
    asked. Subclasses store the queue (:meth:`_take_turn`, :meth:`_leave_queue`, both
    called with the guard held) and call :meth:`_withdraw_all` from ``close()``.

    ``stale_ticket_seconds`` and ``queue_poll_seconds`` may be set per instance
    (tests use short ones); every member of a group should use the same values.
    """

    stale_ticket_seconds: float = STALE_TICKET_SECONDS
    queue_poll_seconds: float = QUEUE_POLL_SECONDS

    def __init__(self, config: RateLimitConfig, requests: Optional[AbstractBucket],
                 tokens: Optional[StateBucket]) -> None:
        super().__init__(config, requests, tokens)
        # One ticket per asking thread: a RateLimiter's head, or the heads of several
        # limiters sharing this backend. Keyed by thread so withdraw() (called by the
        # thread that gives up) finds its own.
        self._members: Dict[int, str] = {}
        self._members_lock = threading.Lock()
        # Tickets of asks that failed (the store timed out): the store may still run the
        # command later and enqueue them. Removed by this backend's next successful ask,
        # never on the failing path itself (it would wait on the store that just failed).
        self._ghosts: List[str] = []
        self._store_failed = False
        self._member_prefix = uuid.uuid4().hex[:16]
        self._member_numbers = itertools.count()

    # --- hooks ----------------------------------------------------------------------------

    @abstractmethod
    def _take_turn(self, member: str, alive_ms: int) -> bool:
        """With the guard held: enqueue ``member`` if it is not queued (at the back),
        keep it alive for ``alive_ms`` more, remove stale tickets (at least those in
        front of it), and say whether ``member`` is now at the front. Atomic in the store."""

    @abstractmethod
    def _keep_alive(self, member: str, alive_ms: int) -> None:
        """With the guard held: ``member`` counts as alive for ``alive_ms`` from now."""

    @abstractmethod
    def _leave_queue(self, members: List[str]) -> None:
        """With the guard held: remove these tickets (missing ones are fine)."""

    # --- the queue ------------------------------------------------------------------------

    def try_acquire(self, weight: int = 1, tokens: int = 0, lead: float = 0.0,
                    demand: Optional[Mapping[str, float]] = None) -> float:
        try:
            wait = super().try_acquire(weight, tokens, lead, demand)
        except LimiterBackendError:
            self._forget_my_member()
            raise
        self._store_failed = False
        return wait

    def _forget_my_member(self) -> None:
        """After a failed ask: this thread's ticket becomes a ghost, to be removed later."""
        with self._members_lock:
            self._store_failed = True
            member = self._members.pop(threading.get_ident(), None)
            if member is not None and member not in self._ghosts:
                self._ghosts.append(member)
                del self._ghosts[:-_MAX_GHOSTS]

    def _take_ghosts(self) -> List[str]:
        with self._members_lock:
            ghosts, self._ghosts = self._ghosts, []
            return ghosts

    def _try_acquire_guarded(self, weight: int, tokens: int, lead: float) -> float:
        ghosts = self._take_ghosts()
        if ghosts:
            self._leave_queue(ghosts)
        member = self._my_member()
        try:
            return self._take_turn_and_try(member, weight, tokens, lead)
        except self._store_errors:
            self._drop_ticket_after_failure(member)
            raise

    def _drop_ticket_after_failure(self, member: str) -> None:
        """With the guard still held, after the store failed: remove ``member``'s ticket
        if that can be done without waiting on the store again (SQLite: the lock is
        ours). Default: nothing; the ticket is removed by the next good ask."""

    def _behind_wait(self, member: str) -> float:
        """With the guard held, ``member`` being behind the front: how long until it asks
        again. Default :attr:`queue_poll_seconds`; a store that can estimate when the
        member's turn comes answers that instead (bounded, for a lost estimate)."""
        return self.queue_poll_seconds

    def _take_turn_and_try(self, member: str, weight: int, tokens: int, lead: float) -> float:
        stale_ms = max(1, round(self.stale_ticket_seconds * 1000))
        if not self._take_turn(member, stale_ms):
            return self._behind_wait(member)
        wait = super()._try_acquire_guarded(weight, tokens, lead)
        if wait > 0:
            # The front ticket waits for the bucket (an interval, a pause): it will not ask
            # again before `wait`, so it stays alive that much longer, not only stale_ms.
            self._keep_alive(member, stale_ms + round(wait * 1000))
            return wait
        self._leave_queue([member])  # admitted, now or by reservation (wait < 0)
        with self._members_lock:
            self._members.pop(threading.get_ident(), None)
        return wait

    def _my_member(self) -> str:
        ident = threading.get_ident()
        with self._members_lock:
            member = self._members.get(ident)
            if member is None:
                # Unique across hosts (the random part) and processes (the pid, which
                # also makes a ticket traceable to its process when looking at the
                # store); a counter instead of a uuid4 per ask (one per admission).
                member = f"{os.getpid()}-{self._member_prefix}-{next(self._member_numbers)}"
                self._members[ident] = member
            return member

    def withdraw(self) -> None:
        with self._members_lock:
            member = self._members.pop(threading.get_ident(), None)
            if member is not None and self._store_failed:
                # The store just failed: do not wait on it again; the next good ask
                # removes the ticket (or it goes stale).
                self._ghosts.append(member)
                member = None
        if member is not None:
            self._leave_quietly([member])

    def _withdraw_all(self) -> None:
        """Every ticket of this backend leaves the queue (for ``close()``). Never raises;
        skips the store when its last ask failed (the tickets go stale by themselves)."""
        with self._members_lock:
            members = list(self._members.values()) + self._ghosts
            self._members.clear()
            self._ghosts = []
            failed = self._store_failed
        if members and not failed:
            self._leave_quietly(members)

    def _leave_quietly(self, members: List[str]) -> None:
        # Called on the way out of a failure (a timeout, an interrupt, the store failing):
        # raising here would hide that error. A ticket left behind goes stale by itself.
        failures: Tuple[Type[BaseException], ...] = (LimiterBackendError, *self._store_errors)
        try:
            with self._guard():
                self._leave_queue(members)
        except failures as error:
            # Through _backend_error: it words the failure without a password.
            shown = error if isinstance(error, LimiterBackendError) else self._backend_error(error)
            logger.warning("could not leave the shared queue: %s; the other members skip "
                           "this ticket after %.1f s", shown, self.stale_ticket_seconds)
