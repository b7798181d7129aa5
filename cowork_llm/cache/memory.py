"""The ``memory`` response cache: an in-process LRU with a time-to-live."""

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Optional, Tuple

from ..results import ChatResult
from .base import Clock, ResponseCache

__all__ = ["MemoryCache"]


class MemoryCache(ResponseCache):
    """An in-process LRU cache with a time-to-live. ``clock`` (seconds, monotonic by
    default) is injectable so tests need not sleep."""

    def __init__(self, *, max_entries: int = 10000, ttl_seconds: float = 86400.0,
                 clock: Clock = time.monotonic) -> None:
        if max_entries < 1 or not ttl_seconds > 0:
            raise ValueError("max_entries must be at least 1 and ttl_seconds greater than 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Tuple[float, ChatResult]] = OrderedDict()

    def get(self, key: str) -> Optional[ChatResult]:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, result = entry
            if now - stored_at >= self.ttl_seconds:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)  # most recently used last
        return replace(result, cached=True)

    def put(self, key: str, result: ChatResult) -> None:
        # Same shape as a SQLite round trip: no raw, not marked cached.
        stored = replace(result, raw={}, cached=False)
        now = self._clock()
        with self._lock:
            self._entries[key] = (now, stored)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
