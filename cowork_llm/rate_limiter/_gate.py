"""RateLimiter: a first-come-first-served gate in front of a limiter backend's buckets.
(The process-wide registry of limiters, :func:`init_global_rate_limiter` and
:func:`get_global_rate_limiter`, lives in :mod:`._registry`.)

A request takes a :class:`Slot` before it starts and gives it back when its response
has been read. Waiters queue in arrival order (pyrate-limiter's own blocking wait is
not FIFO); the head of the queue is admitted when fewer than ``max_concurrent`` slots
are out, no pause is running, and the backend's rates allow another start.

What this guarantees, per limiter: admissions (request starts, as the backend records
them, to the microsecond) at least ``min_interval_seconds`` apart, at most
``max_concurrent`` in flight, admission in arrival order, and no caller going on before
its recorded start. The head asks ahead and reserves its start: the store records it at
the instant the interval ends (up to 100 ms ahead, see
:func:`~._rates.reservation_horizon_seconds`), not whenever a sleep happens to end, and
with processes taking turns one ask per admission does.
What it does not: the time from admission to the request reaching the server (building
and sending it, scheduling); on a busy 2-core machine that varied by a few milliseconds,
so gaps seen by the server can be that much shorter than the admissions' gaps.

After ``os.fork()`` the child's limiters start with an empty gate (no slots out, nobody
queued): the parent's other threads do not exist there to give theirs back. A ``memory``
backend also starts afresh in the child (its own quota, as for any process); a child
using a ``sqlite`` or ``redis`` limiter should create its own client after the fork.
"""

import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import ContextManager, Deque, Dict, Mapping, Optional

from ..config._sections import RateLimitConfig
from ..errors import AcquireCancelled, LimiterAcquireError, LimiterBackendError
from ..limits import LimitReport, LimitsSnapshot
from ._ask_timing import AskTiming
from ._cancel import CANCEL_CHECK_SECONDS, active_cancel_events, is_cancelled
from ._provider_view import Demand, ProviderView
from ._slot import Slot, _SlotContext
from .backends import build_backend
from .backends.base import LimiterBackend
from .backends.memory import MemoryBackend

__all__ = ["RateLimiter", "Slot"]

logger = logging.getLogger(__name__)

# A signal (Ctrl-C) that lands just before a thread blocks on a lock is only handled when
# the wait ends; the main thread therefore waits in slices this long, so a KeyboardInterrupt
# is raised promptly even while no slot frees up.
_MAIN_THREAD_WAIT_SLICE = 0.2
# The longest the head blocks inside a shared backend waiting for a wake-up (close() and
# a local pause() do not reach it there).
_BACKEND_WAIT_BOUND = 0.5


def _at_most(wait: Optional[float], bound: float) -> float:
    """``wait`` capped at ``bound``; None ("until woken") becomes ``bound``."""
    return bound if wait is None else min(wait, bound)


@dataclass(eq=False)
class _Waiter:
    ticket: int
    demand: Optional[Demand] = None
    marks: Optional[Dict[str, float]] = None  # set when the provider view admitted it
    # On the limiter's lock; notified when it may move. Made only when the waiter must
    # wait (most are admitted at once): a waiter without one is not blocked, so there
    # is nobody to notify (a notify with no thread waiting is lost anyway).
    wakeup: Optional[threading.Condition] = None


class RateLimiter:
    """At most ``max_concurrent`` requests in flight, admitted in arrival order, starts
    spaced by the backend's rates. Thread-safe; share one per quota (see
    :func:`init_global_rate_limiter`).
    """

    def __init__(self, config: Optional[RateLimitConfig] = None, *,
                 backend: Optional[LimiterBackend] = None) -> None:
        """``config`` defaults to ``backend``'s configuration, else the defaults.
        Raises ConfigError when the configured backend is not available."""
        if config is None:  # a backend made from a configuration: that one
            config = getattr(backend, "config", None) or RateLimitConfig()
        self.config = config
        self.backend = backend if backend is not None else build_backend(self.config)
        #: what was learned from the provider's rate-limit headers (kept in the backend)
        self.provider_view = ProviderView(self.config, self.backend)
        self._lock = threading.Lock()
        # Only wait_for_queued() listens here, so an arrival wakes no other waiter.
        self._arrived = threading.Condition(self._lock)
        self._queue: Deque[_Waiter] = deque()  # in arrival order; the head is next in
        self._tickets = itertools.count()
        self._in_flight = 0
        self._admitted = 0
        self._closed = False
        self._fork_epoch = 0  # bumped in a forked child: slots from before the fork do not count
        # When the head asks, how far ahead it reserves, and when an admitted thread starts.
        self._timing = AskTiming(self.config)
        _live_limiters.add(self)

    # --- taking and giving back slots ---------------------------------------------------

    def slot(self, weight: int = 1, tokens: int = 0, *,
             demand: Optional[Demand] = None) -> ContextManager[Slot]:
        """Hold a slot for the ``with`` block; it is released on every way out.

        Raises LimiterAcquireError (see :meth:`acquire`), on entering the block.
        """
        return _SlotContext(self, weight, tokens, demand)

    def acquire(self, weight: int = 1, tokens: int = 0, *,
                demand: Optional[Demand] = None) -> Slot:
        """Wait for a slot, in arrival order, and return it.

        ``weight`` is what this request counts for in the request rates (1 for a
        request); ``tokens`` what it counts for in ``tokens_per_minute`` (0: nothing,
        see :func:`~cowork_llm.rate_limiter._rates.estimate_request_tokens`); ``demand``
        what it takes from the provider's learned budgets (see
        :mod:`~cowork_llm.rate_limiter._provider_view`; ignored unless ``adaptive``). The wait
        (queue, pause and interval together) is bounded by ``acquire_timeout_seconds``
        when set.

        Raises:
            LimiterAcquireError: the timeout ran out, the limiter was closed, or
                ``weight`` can never fit the rates.
            AcquireCancelled: an event of this thread's
                :func:`~cowork_llm.rate_limiter.cancel_on` scope was set before admission.
            LimiterBackendError: the shared backend failed.
        """
        asked_at = time.monotonic()
        self.backend.check_fits(weight, tokens)  # fail before queueing, not at the head
        timeout = self.config.acquire_timeout_seconds
        deadline = None if timeout is None else asked_at + timeout
        with self._lock:
            self._check_open()
            me = _Waiter(next(self._tickets),
                         demand if demand is not None and self.config.adaptive else None)
            ahead = len(self._queue)
            self._queue.append(me)
            self._arrived.notify_all()
            admitted = False
            try:
                admitted_at = self._wait_for_turn(me, weight, tokens, asked_at, deadline)
                admitted = True
            finally:
                # Every way out (admission, timeout, KeyboardInterrupt in a wait, a
                # backend error) leaves the queue, so later tickets are never stuck.
                was_head = self._queue[0] is me
                self._queue.remove(me)
                if was_head and not admitted:  # the head gave up: its place between processes too
                    self.backend.withdraw()
                if was_head and not (admitted and self._timing.spacing > 0):
                    self._wake_head()
                # Else the next head is woken once this start is made (start_in_turn):
                # it may not ask before then, and waking it now would only have it
                # sleep again (a thread switch per admission).
            self._in_flight += 1
            self._admitted += 1
            lease = self.backend.take_lease()
        slot = Slot(me.ticket, admitted_at - asked_at, admitted_at, self,
                    _fork_epoch=self._fork_epoch, queue_position=ahead,
                    _lease=lease, demand=me.demand, marks=me.marks or {},
                    admitted_wall=time.time())
        if self._timing.spacing > 0:
            try:
                self._timing.start_in_turn(admitted_at)
            except BaseException:  # Ctrl-C in the short sleep: the slot goes back
                slot.release()
                raise
            finally:
                with self._lock:
                    self._wake_head()
        return slot

    def _wait_for_turn(self, me: "_Waiter", weight: int, tokens: int, asked_at: float,
                       deadline: Optional[float]) -> float:
        """With the lock held: wait until ``me`` is admitted; return its recorded start
        (time.monotonic(): when the backend answered, or later for a reservation)."""
        cancel_events = active_cancel_events()
        # When the backend's last answer says to ask again (monotonic). A release wakes
        # the head too (it may be waiting for max_concurrent); before this instant that
        # changes nothing the backend said, so it does not ask again (an ask costs a
        # round trip to a shared store).
        ask_at = 0.0
        asked_before = False
        first_ask_at: Optional[float] = None
        while True:
            self._check_open()
            if cancel_events and is_cancelled(cancel_events):  # checked before every ask
                raise AcquireCancelled(
                    f"the wait for a slot of rate limiter {self.config.key!r} was cancelled "
                    f"after {time.monotonic() - asked_at:.2f} s; no request was sent")
            wait: Optional[float] = None  # None: until woken
            asked = False
            if self._queue[0] is me and self._in_flight < self.config.max_concurrent:
                if not asked_before:
                    ask_at = max(ask_at, self._timing.next_first_ask)
                early = ask_at - time.monotonic()
                if early > 0:
                    wait = early
                else:
                    # Only the head calls the backend, so releasing the lock meanwhile (a
                    # shared backend may be slow) cannot reorder anyone.
                    self._lock.release()
                    try:
                        horizon = self._timing.horizon_until(deadline)
                        if first_ask_at is None:
                            first_ask_at = time.monotonic()
                        wait = self._try_start(me, weight, tokens, horizon)
                        answered_at = time.monotonic()  # not after waiting for the lock
                    finally:
                        self._lock.acquire()
                    if wait <= 0:
                        start = answered_at - wait
                        # How far ahead of the first ask the slot lay (0: free at once).
                        ahead_of_ask = start - first_ask_at if asked_before or wait < 0 else 0.0
                        self._timing.admitted(start, ahead_of_ask)
                        return start
                    if wait > self._timing.lead:  # ask again the lead before, to reserve the slot
                        wait -= self._timing.lead
                    ask_at = time.monotonic() + wait
                    asked = asked_before = True
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout_error(me, asked_at)
                wait = _at_most(wait, left)
            if threading.current_thread() is threading.main_thread():
                wait = _at_most(wait, _MAIN_THREAD_WAIT_SLICE)
            if cancel_events:  # nobody notifies us when an Event is set: look that often
                wait = _at_most(wait, CANCEL_CHECK_SECONDS)
            if asked and self._await_in_backend(wait):
                ask_at = 0.0  # another member woke this one: ask now
                continue
            if me.wakeup is None:
                me.wakeup = threading.Condition(self._lock)
            me.wakeup.wait(wait)

    def _await_in_backend(self, wait: Optional[float]) -> bool:
        """With the lock held, as the head: let a shared backend block until another
        member wakes this one (no polling); False when it has nothing to wait on."""
        self._lock.release()
        try:
            return self.backend.await_turn(_at_most(wait, _BACKEND_WAIT_BOUND))
        finally:
            self._lock.acquire()

    def _try_start(self, me: "_Waiter", weight: int, tokens: int, horizon: float) -> float:
        """Without the lock, as the head: record a start (up to ``horizon`` ahead) if the
        provider's learned budgets (looked at first, so a refusal there spends no
        configured slot) and the configured rates allow it; else the seconds to wait."""
        if me.demand is None:
            return self.backend.try_acquire(weight, tokens, horizon)
        with self.backend.provider_view_guard():
            wait = self.provider_view.wait(me.demand)
            if wait > 0:
                return wait
            if self.backend.charges_view_with_ask:
                start = self.backend.try_acquire(weight, tokens, horizon, demand=me.demand)
            else:
                start = self.backend.try_acquire(weight, tokens, horizon)
            if start > 0:
                return start
            marks = self.backend.take_charge()
            if marks is not None:  # the ask charged the view too (nothing learned in it)
                me.marks = marks
                return start
            # Without a guard (redis) another process may have charged the view since
            # the look above; the configured slot is then lost (never an excess), as
            # with the token bucket.
            wait, me.marks = self.provider_view.admit(me.demand)
            return wait if wait > 0 else start

    def observe(self, slot: Slot, report: Optional[LimitReport],
                used: Optional[Mapping[str, float]] = None, *, refused: bool = False,
                reported_age: float = 0.0) -> None:
        """What the answer (or error) to ``slot``'s request said: its rate-limit headers
        correct the learned view, and ``used`` (the real usage per dimension) settles
        the estimate charged at admission; ``refused``: the answer was a 429;
        ``reported_age``: seconds since the headers arrived (default: just now). Nothing
        when the slot carried no demand. Never raises: the answer already arrived, so a
        shared store that fails now is logged (WARNING), not raised over it; the next
        admission raises it."""
        if slot.demand is None or slot._fork_epoch != self._fork_epoch:
            return
        try:
            self.provider_view.observe(report, marks=slot.marks, demand=slot.demand, used=used,
                                       refused=refused, reported_age=reported_age)
        except LimiterBackendError as error:
            logger.warning("rate limiter %r could not record what the provider said: %s",
                           self.config.key, error)

    def limits(self) -> LimitsSnapshot:
        """A frozen snapshot of the configured limits and of what was learned from the
        provider. Raises LimiterBackendError when the shared store fails."""
        return self.provider_view.snapshot()

    def _wake_head(self) -> None:
        """With the lock held: let the head look again. Only the head can move, so only
        it is woken; waking every waiter would have them fight for the GIL just when
        the admitted request is being sent."""
        if self._queue and self._queue[0].wakeup is not None:
            self._queue[0].wakeup.notify()

    def _release(self, slot: Slot) -> None:
        with self._lock:
            if slot._released:
                return
            slot._released = True
            if slot._fork_epoch != self._fork_epoch:
                return  # taken before a fork(): this process never counted it
        if slot._lease is not None:
            # Before waking anyone: the head asks the store, which must see the lease back.
            self.backend.release_lease(slot._lease)
        with self._lock:
            # Only a head held by max_concurrent waits for a release; any other waits for
            # a time it knows, and waking it would only cost a thread switch.
            if self._in_flight >= self.config.max_concurrent:
                self._wake_head()
            self._in_flight -= 1

    def pause(self, seconds: float) -> None:
        """Hold every waiter (not only the caller) for ``seconds``, e.g. a 429's
        Retry-After. Requests already in flight are not affected."""
        if seconds <= 0:
            return
        self.backend.pause(seconds)
        logger.info("rate limiter %r paused for %.2f s", self.config.key, seconds)
        with self._lock:
            self._wake_head()

    def close(self) -> None:
        """Stop the backend; waiters and later acquisitions get LimiterAcquireError.
        Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for waiter in self._queue:
                if waiter.wakeup is not None:
                    waiter.wakeup.notify()
        self.backend.close()

    def _forget_parent_threads(self) -> None:
        """In a child after fork(): only the forking thread exists, so the slots and
        queue places of the parent's other threads would never be given back (the child
        waited for ever, or until acquire_timeout_seconds). Start with an empty gate; a
        memory backend starts afresh too (its locks may have been held at the fork)."""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue = deque()
        self._in_flight = 0
        self._timing.reset()  # a new process: its starts are spaced by its backend
        self._fork_epoch += 1
        if isinstance(self.backend, MemoryBackend):
            self.backend = build_backend(self.config)
            self.provider_view = ProviderView(self.config, self.backend)

    # --- introspection ------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """How many callers are waiting for a slot."""
        with self._lock:
            return len(self._queue)

    @property
    def in_flight(self) -> int:
        """How many slots are out."""
        with self._lock:
            return self._in_flight

    @property
    def admitted_count(self) -> int:
        """How many slots were handed out since the limiter was made."""
        with self._lock:
            return self._admitted

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_for_queued(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` callers are waiting; False if ``timeout``
        ran out first. For tests and diagnostics: lets a test line threads up in a
        known order without sleeping."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._queue) >= count, timeout)

    def __repr__(self) -> str:
        c = self.config
        return (f"<RateLimiter key={c.key!r} backend={self.backend.description} "
                f"min_interval={c.min_interval_seconds}s max_concurrent={c.max_concurrent} "
                f"rpm={c.requests_per_minute} queued={len(self._queue)} "
                f"in_flight={self._in_flight}>")

    # --- errors -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LimiterAcquireError(
                f"rate limiter {self.config.key!r} is closed; create a new one "
                "(or a new client) to send more requests"
            )

    def _timeout_error(self, me: "_Waiter", asked_at: float) -> LimiterAcquireError:
        ahead = self._queue.index(me)
        return LimiterAcquireError(
            f"no rate-limiter slot after waiting {time.monotonic() - asked_at:.2f} s "
            f"(llm.rate_limit.acquire_timeout_seconds = {self.config.acquire_timeout_seconds}); "
            f"{len(self._queue)} requests were queued ({ahead} ahead of this one), "
            f"{self._in_flight} in flight, key {self.config.key!r}. Raise the timeout, "
            "lower the number of threads, or raise the limits if the provider allows"
        )


_live_limiters: "weakref.WeakSet[RateLimiter]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for limiter in list(_live_limiters):
        limiter._forget_parent_threads()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
