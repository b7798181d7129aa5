"""Where a rate limit's state lives: the request bucket, the token bucket and the pause.

:class:`~cowork_llm.rate_limiter.RateLimiter` owns the FIFO gate (ordering and
``max_concurrent``, always per process); a *backend* owns what may be shared with other
processes or hosts: the rates that space request starts, the tokens-per-minute budget,
and the pause a 429's Retry-After asks for. ``memory`` keeps them in the process;
``sqlite`` (:mod:`~cowork_llm.rate_limiter.backends.sqlite`) in a file shared by the processes of one
machine; ``redis`` (:mod:`~cowork_llm.rate_limiter.backends.redis`) in a Redis server shared by hosts.

Two buckets, two algorithms, the same in every backend:

- requests: pyrate-limiter's sliding-window log (``InMemoryBucket``, ``SQLiteBucket``,
  ``RedisBucket``): one entry per request, exact "at most n in any window";
- tokens: pyrate-limiter's ``TokenBucket`` (``StateBucket``): a few numbers however
  heavy the requests, a budget of ``tokens_per_minute`` refilling continuously, the
  way the providers describe their own token limits.

Between processes, ``sqlite`` and ``redis`` also keep the gate's order: the heads of
the processes' queues take tickets in a shared queue (:mod:`~cowork_llm.rate_limiter.backends._ticket_queue`).

The gate never uses pyrate-limiter's own blocking wait: that wait is not FIFO, cannot be
interrupted early (a pause, ``close()``), and after sleeping it stamps the item with
"previous time + delay" instead of reading the clock. Nor its non-blocking acquire: with
a file lock and filelock 4.x it raises ``TypeError`` (it calls ``lock.acquire(False)``).
Instead the head of the queue calls :meth:`LimiterBackend.try_acquire`, which puts into
the buckets directly and says how long to wait before asking again.
"""

import logging
import threading
import time
from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

from pyrate_limiter import RateItem, StateBucket
from pyrate_limiter.abstracts.bucket import AbstractBucket

from ...config._sections import RateLimitConfig
from ...errors import LimiterAcquireError, LimiterBackendError
from .._rates import CHARS_PER_TOKEN, REQUEST_LOG_UNITS_PER_SECOND
from ._provider_store import LocalViewStore

__all__ = ["LimiterBackend", "BucketBackend"]

logger = logging.getLogger(__name__)

# When a bucket refuses but reports no wait (a race), ask again soon rather than spinning.
_MIN_RETRY_SECONDS = 0.001
# Expired request entries are deleted this often (pyrate's own Leaker thread is not used).
_LEAK_EVERY = 10 * REQUEST_LOG_UNITS_PER_SECOND
# Makes the process-local provider view of a backend the first time it is used.
_LOCAL_VIEW_LOCK = threading.Lock()

T = TypeVar("T")


class LimiterBackend(ABC):
    """The shared part of one rate limit: its rates, its token budget and its pause.

    Implementations are thread-safe. Shared backends keep the pause in the shared
    store, so a 429 seen by one process pauses the whole group.
    """

    #: Names the backend and its address in error messages (never a password).
    description: str = "backend"

    def check_fits(self, weight: int = 1, tokens: int = 0) -> None:  # noqa: B027 - optional
        """Raise LimiterAcquireError when a request of ``weight`` / ``tokens`` could
        never be admitted, so it fails before queueing instead of waiting forever."""

    @abstractmethod
    def try_acquire(self, weight: int = 1, tokens: int = 0, lead: float = 0.0,
                    demand: Optional[Mapping[str, float]] = None) -> float:
        """Record one request start (``weight`` for the request rates, ``tokens`` for
        the token budget) if no pause is running and every limit allows it now, or,
        when only the request rates stand in the way and they free a slot within
        ``lead`` seconds, at that instant (a reservation, see
        :func:`~cowork_llm.rate_limiter._rates.reservation_horizon_seconds`).
        ``demand``: the adaptive view's demand, given only to a backend that
        :attr:`charges_view_with_ask` (others ignore it).

        Returns a number <= 0 when the start was recorded: 0.0 for now, ``-d`` for a
        reservation ``d`` seconds from now (the caller must not start before). Otherwise
        the seconds to wait before asking again (one call, so a shared backend answers
        in few round trips). Raises LimiterAcquireError when the request can never fit,
        and LimiterBackendError when the shared store fails.
        """

    @abstractmethod
    def pause(self, seconds: float) -> None:
        """No start before ``seconds`` from now (an earlier, longer pause stands).
        Raises LimiterBackendError when the shared store fails."""

    @abstractmethod
    def pause_remaining(self) -> float:
        """Seconds left of the current pause; 0.0 when none.
        Raises LimiterBackendError when the shared store fails."""

    def await_turn(self, seconds: float) -> bool:
        """Called by the head of the gate (its lock released) after :meth:`try_acquire`
        asked it to wait: block for at most ``seconds`` until another member signals that
        this one may move, and return True; or return False at once when there is
        nothing in the store to wait on (the gate then sleeps for the wait itself).
        Never raises."""
        return False

    def take_lease(self) -> Optional[str]:
        """Right after an admission, in the admitted thread: the id of the shared
        concurrency lease it took (``max_concurrent_scope = "shared"``), else None."""
        return None

    def release_lease(self, lease: str) -> None:  # noqa: B027 - no leases without a shared cap
        """Give back a lease from :meth:`take_lease` (the slot was released). Never
        raises: a lease that cannot be given back expires by itself."""

    # --- what was learned from the provider (cowork_llm.rate_limiter._provider_view) ------

    #: True when the provider view is shared with other processes (sqlite, redis).
    shares_provider_view: bool = False

    #: True when :meth:`try_acquire` takes ``demand=`` (the adaptive view's demand) and
    #: may charge the provider view in the same atomic step as the start (redis, while
    #: nothing is learned in the view); the marks are then had from :meth:`take_charge`.
    charges_view_with_ask: bool = False

    def take_charge(self) -> Optional[Dict[str, float]]:
        """Right after an admission asked with ``demand=``, in the admitted thread: the
        marks (cumulative charge per dimension) if the ask charged the provider view
        itself, else None (the caller charges it)."""
        return None

    def provider_view_guard(self) -> ContextManager[Any]:
        """Held by the head around one admission (the provider view's look, the buckets,
        the view's charge) so a backend that can make them one atomic step does:
        sqlite's file lock (reentrant in its thread). Others: nothing."""
        return nullcontext()

    def clock(self) -> float:
        """Now, in seconds, on the clock the group compares: the wall clock for memory
        and sqlite (the processes of one machine share it), Redis's ``TIME`` for redis
        (estimated from the last answer, so hosts' clocks need not agree)."""
        return time.time()

    def update_provider_view(self, update: Callable[[Dict[str, Any], float], T], *,
                             read_only: bool = False) -> T:
        """Run ``update(state, now)`` on the provider view (a JSON-able dict it may change
        in place; ``now`` in seconds on the store's clock) atomically with respect to every
        other member sharing this backend, and return what it returns. This default keeps
        the view in the process (``memory``); shared backends store it next to their
        buckets (:mod:`~cowork_llm.rate_limiter.backends._provider_store`). ``read_only``:
        ``update`` changes nothing (a shared store may then skip its transaction).
        Raises LimiterBackendError when the shared store fails."""
        store = self.__dict__.get("_local_provider_view")
        if store is None:
            with _LOCAL_VIEW_LOCK:
                store = self.__dict__.setdefault("_local_provider_view", LocalViewStore())
        return store.update(update)  # type: ignore[no-any-return]

    def withdraw(self) -> None:  # noqa: B027 - a backend without a shared queue has nothing to do
        """The calling thread stops asking without having been admitted (a timeout, an
        interrupt, ``close()``): give up its place in the shared queue, if it holds one,
        so other processes need not wait for it to go stale. Never raises."""

    def close(self) -> None:  # noqa: B027 - a backend with nothing to release is fine
        """Release files and connections. Safe to call twice."""


class BucketBackend(LimiterBackend):
    """try_acquire over a request bucket and a token bucket; subclasses say where they
    live (:meth:`_guard`, the pause hooks, which exceptions mean "the store failed").

    The request bucket is a pyrate-limiter log whose timestamps are integer microseconds
    (:data:`~cowork_llm.rate_limiter._rates.REQUEST_LOG_UNITS_PER_SECOND`) of
    :meth:`_request_clock`, its rates from
    :func:`~cowork_llm.rate_limiter._rates.request_log_rates`.

    One attempt: pause? -> enough tokens (looked at, not spent)? -> put the request ->
    spend the tokens. Under a guard that excludes every other member (the SQLite file
    lock) that is atomic. Where it is not (Redis: each step is atomic on its own),
    another member may spend the tokens between the look and the spend; the request
    entry then stays spent: a lost slot, never an excess.
    """

    #: Exceptions from the store that become LimiterBackendError.
    _store_errors: Tuple[Type[BaseException], ...] = ()

    def __init__(self, config: RateLimitConfig, requests: Optional[AbstractBucket],
                 tokens: Optional[StateBucket]) -> None:
        self.config = config
        self._name = config.key
        self._requests = requests
        self._tokens = tokens
        self._last_leak: Optional[int] = None
        self._rates = requests.rates if requests is not None else []

    @property
    def _rates(self) -> List[Any]:
        return self._rate_list

    @_rates.setter
    def _rates(self, rates: List[Any]) -> None:
        # check_fits runs before every ask: work out the heaviest request that fits once.
        self._rate_list = rates
        self._heaviest_request: Optional[int] = min((rate.limit for rate in rates), default=None)

    def _counts_tokens(self) -> bool:
        """Whether asks carry their tokens to the store (a token budget is set)."""
        return self._tokens is not None

    # --- hooks ----------------------------------------------------------------------------

    def _request_clock(self) -> int:
        """Now, in the request log's unit (microseconds), on the clock the members
        sharing the log agree on: the wall clock (processes of one machine)."""
        return time.time_ns() // 1000

    def _guard(self) -> ContextManager[Any]:
        """Held around every read-modify-write of the shared state."""
        return nullcontext()

    @abstractmethod
    def _read_pause(self) -> float:
        """With the guard held: seconds of pause left."""

    @abstractmethod
    def _write_pause(self, seconds: float) -> None:
        """With the guard held: extend the pause to ``seconds`` from now."""

    def _put_request(self, item: RateItem) -> bool:
        assert self._requests is not None
        return bool(self._requests.put(item))

    def _backend_error(self, error: BaseException) -> LimiterBackendError:
        return LimiterBackendError(f"{self.description} rate-limiter backend failed: {error}")

    # --- the contract ---------------------------------------------------------------------

    def check_fits(self, weight: int = 1, tokens: int = 0) -> None:
        if self._heaviest_request is not None and weight > self._heaviest_request:
            raise LimiterAcquireError(
                f"a request of weight {weight} can never fit the request rates: at most "
                f"{self._heaviest_request} start(s) per window (llm.rate_limit "
                f"min_interval_seconds = {self.config.min_interval_seconds}, requests_per_minute "
                f"= {self.config.requests_per_minute}, key {self._name!r})")
        tpm = self.config.tokens_per_minute
        if tpm is not None and tokens > tpm:
            raise LimiterAcquireError(
                f"this request is estimated at {tokens} tokens (the larger of prompt "
                f"characters / {CHARS_PER_TOKEN} and max_tokens), more than the whole budget of "
                f"llm.rate_limit.tokens_per_minute = {tpm}: it can never fit. Shorten "
                f"the prompt, lower max_tokens, or raise tokens_per_minute if the "
                f"provider allows (key {self._name!r})")

    def try_acquire(self, weight: int = 1, tokens: int = 0, lead: float = 0.0,
                    demand: Optional[Mapping[str, float]] = None) -> float:
        self.check_fits(weight, tokens)
        try:
            with self._guard():
                return self._try_acquire_guarded(weight, tokens if self._counts_tokens() else 0, lead)
        except self._store_errors as error:
            raise self._backend_error(error) from error

    def _try_acquire_guarded(self, weight: int, tokens: int, lead: float) -> float:
        paused = self._read_pause()
        if paused > 0:
            return paused
        capped = self._cap_wait()
        if capped > 0:
            return capped
        if tokens > 0:
            wait_ms = self._token_wait_ms(tokens)
            if wait_ms > 0:
                return wait_ms / 1000
        start_in = 0  # request-log units; > 0: a reservation
        if self._requests is not None:
            now = self._request_clock()
            free_at = self._first_free(now, weight)
            if free_at - now > lead * REQUEST_LOG_UNITS_PER_SECOND:
                return self._seconds(free_at - now, REQUEST_LOG_UNITS_PER_SECOND)
            item = RateItem(self._name, now, weight)
            if free_at > now and self._put_request(RateItem(self._name, free_at, weight)):
                start_in = free_at - now  # the store's estimate held: reserved in one put
            elif not self._put_request(item):
                wait = self._requests.waiting(item)
                assert isinstance(wait, int)  # sync buckets answer synchronously
                if not 0 < wait <= lead * REQUEST_LOG_UNITS_PER_SECOND:
                    return self._seconds(wait, REQUEST_LOG_UNITS_PER_SECOND)
                # The slot frees within the lead: take it for that instant. It is after
                # every start in the log, so the log stays in time order.
                item = RateItem(self._name, now + wait, weight)
                if not self._put_request(item):  # kept for a bucket that disagrees
                    return self._seconds(self._requests.waiting(item), REQUEST_LOG_UNITS_PER_SECOND)
                start_in = wait
            self._leak_now_and_then(now)
        if tokens > 0:
            assert self._tokens is not None
            item = RateItem(self._name, self._tokens.now(), tokens)
            if not self._tokens.put(item):
                logger.debug("tokens spent by another member after the request slot was taken")
                return self._seconds(self._tokens.waiting(item), 1000)
        self._on_admitted()
        return -start_in / REQUEST_LOG_UNITS_PER_SECOND

    def _first_free(self, now: int, weight: int) -> int:
        """With the guard held: the first instant (request-log units, from ``now``) when
        every request rate has room for ``weight``, if the store can tell in less than
        a failed put costs; else ``now`` (the bucket is then asked at ``now`` and says
        how long). The bucket checks the put either way."""
        return now

    def _cap_wait(self) -> float:
        """With the guard held: seconds until a shared concurrency lease may be free
        (0.0: one is free, or there is no shared cap)."""
        return 0.0

    def _on_admitted(self) -> None:
        """With the guard held, right after a start was recorded (take the lease)."""

    def _token_wait_ms(self, tokens: int) -> int:
        """How long until ``tokens`` fit, replaying the algorithm on the stored state
        without spending anything."""
        bucket = self._tokens
        assert bucket is not None
        state = bucket.store.read(bucket.algorithm, bucket.rates)
        _, decision = bucket.algorithm.step(bucket.rates, state, bucket.now(), tokens)  # type: ignore[arg-type]
        if decision.allowed:
            return 0
        return max(decision.retry_after_ms or 1, 1)

    def _seconds(self, wait: Any, units_per_second: int) -> float:
        assert isinstance(wait, int)  # sync buckets answer synchronously
        if wait < 0:  # check_fits rules this out; kept for a bucket that disagrees
            raise LimiterAcquireError(f"the request can never fit the rate limit (key {self._name!r})")
        return max(wait / units_per_second, _MIN_RETRY_SECONDS)

    def _leak_now_and_then(self, now: int) -> None:
        if self._last_leak is None or now - self._last_leak >= _LEAK_EVERY:
            self._last_leak = now
            assert self._requests is not None
            self._requests.leak(now)

    def pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            with self._guard():
                self._write_pause(seconds)
        except self._store_errors as error:
            raise self._backend_error(error) from error

    def pause_remaining(self) -> float:
        try:
            with self._guard():
                return self._read_pause()
        except self._store_errors as error:
            raise self._backend_error(error) from error
