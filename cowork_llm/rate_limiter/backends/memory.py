"""The ``memory`` backend: the process's own limit, nothing shared with other processes."""

import threading
import time
from typing import Any, ContextManager

from pyrate_limiter import InMemoryBucket, StateBucket, TokenBucket

from ...config._sections import RateLimitConfig
from .._rates import request_log_rates, token_rates
from .base import BucketBackend

__all__ = ["MemoryBackend", "BACKEND"]


class MemoryBackend(BucketBackend):
    """The process's own limit: ``InMemoryBucket``, an in-memory ``TokenBucket`` and a
    local pause (monotonic clock)."""

    description = "memory"

    def __init__(self, config: RateLimitConfig) -> None:
        rates, tpm = request_log_rates(config), token_rates(config)
        super().__init__(config, InMemoryBucket(rates) if rates else None,
                         StateBucket(tpm, algorithm=TokenBucket()) if tpm else None)
        self._pause_lock = threading.Lock()
        self._pause_until = 0.0  # time.monotonic()

    def _request_clock(self) -> int:
        return time.monotonic_ns() // 1000  # one process: immune to wall-clock steps

    def _guard(self) -> ContextManager[Any]:
        return self._pause_lock

    def _read_pause(self) -> float:
        return max(0.0, self._pause_until - time.monotonic())

    def _write_pause(self, seconds: float) -> None:
        self._pause_until = max(self._pause_until, time.monotonic() + seconds)


#: What :func:`cowork_llm.rate_limiter.backends.build_backend` builds for ``backend = "memory"``.
BACKEND = MemoryBackend
