"""The opt-in response cache: an answer already paid for is not asked for twice.

:func:`cache_key` hashes what determines an answer (provider, base_url, model, messages,
options) — never the API key. :func:`build_cache` turns a
:class:`~cowork_llm.config.CacheConfig` into a :class:`MemoryCache`, a :class:`SqliteCache`
or None (``backend = "none"``).

Contract for callers:

- Store only successful results; the cache stores whatever it is given (the caller knows
  what "successful" means, e.g. whether a truncated answer is worth keeping).
- A stored result keeps content, model, finish_reason, usage and request_id; ``raw`` is not
  stored (it could hold anything the provider sent). A hit comes back with
  ``cached=True`` and ``raw == {}``.
- Neither backend raises from :meth:`ResponseCache.get` or :meth:`ResponseCache.put`: a
  cache that fails is logged as a WARNING and behaves as a miss, never a failed call.
"""

import time
from typing import Optional

from ..config._sections import CacheConfig
from .base import Clock, ResponseCache, cache_key, result_from_json, result_to_json
from .memory import MemoryCache
from .sqlite import SqliteCache

__all__ = [
    "build_cache",
    "cache_key",
    "MemoryCache",
    "ResponseCache",
    "result_from_json",
    "result_to_json",
    "SqliteCache",
]


def build_cache(config: CacheConfig, *, clock: Optional[Clock] = None) -> Optional[ResponseCache]:
    """The cache ``config`` asks for, or None for ``backend = "none"``.

    Never raises for an unusable SQLite file: :class:`SqliteCache` warns and starts fresh.
    """
    if config.backend == "none":
        return None
    if config.backend == "memory":
        return MemoryCache(max_entries=config.max_entries, ttl_seconds=config.ttl_seconds,
                           clock=clock or time.monotonic)
    assert config.path is not None  # CacheConfig requires it for sqlite
    return SqliteCache(config.path, max_entries=config.max_entries,
                       ttl_seconds=config.ttl_seconds, clock=clock or time.time)
