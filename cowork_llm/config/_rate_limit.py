"""The ``[llm.rate_limit]`` section (:class:`RateLimitConfig`): how fast requests may
start, how many may be in flight, and where the limiter keeps its state; with the names
of the backends, concurrency scopes and paces.

Not ``from __future__ import annotations``: dataclasses-json reads the real annotations.
"""

import typing
from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError
from ._base import Section
from ._checks import check_at_most_a_year

__all__ = ["RateLimitConfig", "LIMITER_BACKENDS", "CONCURRENCY_SCOPES", "PACES"]

LIMITER_BACKENDS = ("memory", "sqlite", "redis")
#: ``rate_limit.max_concurrent_scope``: the cap per process, or across the backend's group.
CONCURRENCY_SCOPES = ("process", "shared")
# How the learned provider limits admit requests: "bucket" whenever the modelled bucket
# has room; "even" also spreads starts over the window (600 RPM: one every 100 ms).
PACES = ("bucket", "even")


@dataclass(frozen=True, repr=False)
class RateLimitConfig(Section):
    """How fast requests may start, and how many may be in flight.

    Raises ConfigError naming the key (``llm.<section>.<name>``) when a value is invalid.
    """

    min_interval_seconds: float = 2.0
    max_concurrent: int = 1
    max_concurrent_scope: str = "process"
    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None
    acquire_timeout_seconds: Optional[float] = None
    backend: str = "memory"
    path: Optional[str] = None
    redis_url: Optional[str] = None
    key: str = "default"
    adaptive: bool = True
    pace: str = "bucket"

    _section: typing.ClassVar[str] = "llm.rate_limit"

    def __post_init__(self) -> None:
        self._check_types()
        if self.min_interval_seconds < 0:
            self._fail("min_interval_seconds", "must be 0 or more")
        if self.max_concurrent < 1:
            self._fail("max_concurrent", "must be at least 1")
        if self.max_concurrent_scope not in CONCURRENCY_SCOPES:
            self._fail("max_concurrent_scope", f"must be one of {', '.join(CONCURRENCY_SCOPES)}")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            self._fail("requests_per_minute", "must be at least 1")
        if self.tokens_per_minute is not None and self.tokens_per_minute < 1:
            self._fail("tokens_per_minute", "must be at least 1")
        if self.acquire_timeout_seconds is not None and not self.acquire_timeout_seconds > 0:
            self._fail("acquire_timeout_seconds", "must be greater than 0")
        check_at_most_a_year(self._section, min_interval_seconds=self.min_interval_seconds,
                             acquire_timeout_seconds=self.acquire_timeout_seconds)
        if self.backend not in LIMITER_BACKENDS:
            self._fail("backend", f"must be one of {', '.join(LIMITER_BACKENDS)}")
        if self.backend == "sqlite" and not self.path:
            raise ConfigError(f"{self._section}.path is required when backend = 'sqlite': set "
                              "path under [llm.rate_limit] or COWORK_LLM_RATE_LIMIT_PATH",
                              key=f"{self._section}.path")
        if self.backend == "redis" and not self.redis_url:
            raise ConfigError(f"{self._section}.redis_url is required when backend = 'redis': set "
                              "redis_url under [llm.rate_limit] or COWORK_LLM_RATE_LIMIT_REDIS_URL",
                              key=f"{self._section}.redis_url")
        if not self.key.strip():
            self._fail("key", "must not be empty")
        if self.max_concurrent_scope == "shared" and self.backend == "memory":
            self._fail("max_concurrent_scope", "'shared' needs a shared backend: set "
                       "backend = 'sqlite' or 'redis' (memory is one process)")
        if self.pace not in PACES:
            self._fail("pace", f"must be one of {', '.join(PACES)}")
