"""Where a rate limit's state lives: the pyrate-limiter bucket and the pause.

:class:`~cowork_llm.rate_limiter.RateLimiter` owns the FIFO gate (ordering and
``max_concurrent``, always per process); a *backend* owns what may be shared with other
processes or hosts: the rates that space request starts, and the pause a 429's
Retry-After asks for. Only ``memory`` exists today; ``sqlite`` and ``redis`` backends
(and a tokens-per-minute bucket) drop in as new :class:`LimiterBackend` classes
registered in :data:`BACKENDS`.

The gate never uses pyrate-limiter's own blocking wait: that wait is not FIFO, cannot be
interrupted early (a pause, ``close()``), and after sleeping it stamps the item with
"previous time + delay" instead of reading the clock. Instead the head of the queue
calls :meth:`LimiterBackend.try_acquire`, which asks pyrate without blocking and says
how long to wait before asking again.
"""

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from typing import Callable, Dict, List, Optional

from pyrate_limiter import InMemoryBucket, Limiter, Rate, RateItem

from .config import RateLimitConfig
from .errors import ConfigError, LimiterAcquireError

__all__ = ["LimiterBackend", "MemoryBackend", "BACKENDS", "build_backend", "request_rates"]

logger = logging.getLogger(__name__)

_MINUTE_MS = 60_000
# When pyrate refuses but reports no wait (a race with its leaker), ask again soon
# rather than spinning.
_MIN_RETRY_SECONDS = 0.001


def request_rates(config: RateLimitConfig) -> List[Rate]:
    """The pyrate-limiter rates for ``config``, tight to loose as pyrate requires.

    ``min_interval_seconds`` becomes ``Rate(1, interval)``, rounded up to whole
    milliseconds so it never allows more than asked. ``requests_per_minute`` becomes
    ``Rate(n, 1 minute)`` unless the interval already implies it (pyrate rejects a
    looser rate after a tighter one); ``requests_per_minute = 1`` alone implies any
    interval under a minute. An empty list means "no rate": only the gate applies.
    """
    interval_ms = math.ceil(config.min_interval_seconds * 1000)
    rpm = config.requests_per_minute
    rates: List[Rate] = []
    if interval_ms > 0:
        rates.append(Rate(1, interval_ms))
    if rpm is not None:
        if interval_ms >= _MINUTE_MS or (interval_ms > 0 and rpm * interval_ms > _MINUTE_MS):
            # Starts spaced > interval_ms apart fit at most floor(60000 / interval_ms) + 1
            # in any minute, which is <= rpm here: the extra rate could never refuse.
            logger.debug("requests_per_minute=%d is implied by min_interval_seconds=%s",
                         rpm, config.min_interval_seconds)
        elif rpm == 1:
            rates = [Rate(1, _MINUTE_MS)]  # one a minute is stricter than any shorter interval
        else:
            rates.append(Rate(rpm, _MINUTE_MS))
    return rates


class LimiterBackend(ABC):
    """The shared part of one rate limit: its rates and its pause.

    Implementations are thread-safe. Shared backends keep the pause in the shared
    store, so a 429 seen by one process pauses the whole group.
    """

    #: Names the backend and its address in error messages (never a password).
    description: str = "backend"

    @abstractmethod
    def try_acquire(self, weight: int = 1) -> float:
        """Record one request start if no pause is running and the rates allow it now.

        Returns 0.0 when the start was recorded, otherwise the seconds to wait before
        asking again (one call, so a shared backend can answer in one round trip).
        Raises LimiterAcquireError when ``weight`` can never fit, and
        LimiterBackendError when the shared store fails.
        """

    @abstractmethod
    def pause(self, seconds: float) -> None:
        """No start before ``seconds`` from now (an earlier, longer pause stands)."""

    @abstractmethod
    def pause_remaining(self) -> float:
        """Seconds left of the current pause; 0.0 when none."""

    def close(self) -> None:  # noqa: B027 - a backend with nothing to release is fine
        """Release threads, files and connections. Safe to call twice."""


class MemoryBackend(LimiterBackend):
    """The process's own limit: pyrate-limiter's ``InMemoryBucket`` and a local pause."""

    description = "memory"

    def __init__(self, config: RateLimitConfig) -> None:
        self._name = config.key
        self._rates = request_rates(config)
        self._bucket: Optional[InMemoryBucket] = None
        self._limiter: Optional[Limiter] = None
        if self._rates:
            self._bucket = InMemoryBucket(self._rates)
            # buffer_ms only pads pyrate's own blocking wait, which we never use; 0 says so.
            self._limiter = Limiter(self._bucket, buffer_ms=0)
        self._pause_lock = threading.Lock()
        self._pause_until = 0.0  # time.monotonic()

    def try_acquire(self, weight: int = 1) -> float:
        paused = self.pause_remaining()
        if paused > 0:
            return paused
        if self._limiter is None or self._bucket is None:
            return 0.0
        if self._limiter.try_acquire(self._name, weight, blocking=False):
            return 0.0
        # The refused put recorded when room appears; ask the bucket for it with a
        # fresh timestamp so the figure is measured from now.
        wait_ms = self._bucket.waiting(RateItem(self._name, self._bucket.now(), weight))
        assert isinstance(wait_ms, int)  # a sync bucket answers synchronously
        if wait_ms == -1:
            raise LimiterAcquireError(
                f"a request of weight {weight} can never fit the rate limit "
                f"{self._rates} (llm.rate_limit key {self._name!r})"
            )
        return max(wait_ms / 1000, _MIN_RETRY_SECONDS)

    def pause(self, seconds: float) -> None:
        with self._pause_lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def pause_remaining(self) -> float:
        with self._pause_lock:
            return max(0.0, self._pause_until - time.monotonic())

    def close(self) -> None:
        if self._limiter is not None:
            self._limiter.close()  # stops pyrate's "Leaker" daemon thread


#: backend name (``[llm.rate_limit] backend``) → factory.
BACKENDS: Dict[str, Callable[[RateLimitConfig], LimiterBackend]] = {
    "memory": MemoryBackend,
}


def build_backend(config: RateLimitConfig) -> LimiterBackend:
    """The backend named by ``config.backend``.

    Raises ConfigError when that backend is not available in this version.
    """
    factory = BACKENDS.get(config.backend)
    if factory is None:
        raise ConfigError(
            f"llm.rate_limit.backend = {config.backend!r} is not available in this version; "
            f"use one of: {', '.join(sorted(BACKENDS))}"
        )
    return factory(config)
