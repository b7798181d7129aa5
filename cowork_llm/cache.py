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

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Tuple

from .config import CacheConfig
from .llm import ChatResult, Message, Usage

if TYPE_CHECKING:
    from ._sqlite_cache import SqliteCache

__all__ = ["ResponseCache", "MemoryCache", "SqliteCache", "cache_key", "build_cache",
           "result_to_json", "result_from_json"]

Clock = Callable[[], float]

# Bumped when what goes into a key, or how a result is stored, changes: old entries then
# simply stop matching.
_KEY_VERSION = "cowork-llm-cache-1"
# Option names that smell of credentials; refusing them keeps a careless caller from
# mixing a secret into a key (a hash of it would still be a fingerprint of the secret).
_SECRET_WORDS = ("key", "authorization", "token", "secret", "password")
_ALLOWED_TOKEN_OPTIONS = frozenset({"max_tokens", "max_completion_tokens"})


def cache_key(provider: str, base_url: str, model: str, messages: Sequence[Message],
              options: Optional[Mapping[str, Any]] = None) -> str:
    """sha256 (hex) of the canonical JSON of everything that determines an answer.

    Options whose value is None are left out (None means "the server's default", the
    same as not sending it); a trailing "/" of base_url does not matter.

    Raises:
        ValueError: an option looks like a credential (``api_key`` ...), or a message or
            option value cannot be written as JSON.
    """
    options = {name: value for name, value in (options or {}).items() if value is not None}
    for name in options:
        lowered = name.lower()
        if lowered not in _ALLOWED_TOKEN_OPTIONS and any(w in lowered for w in _SECRET_WORDS):
            raise ValueError(f"cache_key option {name!r} looks like a credential; "
                             "credentials must never be part of a cache key")
    material = {
        "version": _KEY_VERSION,
        "provider": provider,
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": [dict(m) for m in messages],
        "options": options,
    }
    try:
        blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cache_key: messages and options must be plain JSON values ({error})") from None
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def result_to_json(result: ChatResult) -> str:
    """The stored form of a result (without ``raw`` and ``cached``)."""
    usage = result.usage
    return json.dumps({
        "content": result.content,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "usage": None if usage is None else [usage.prompt_tokens, usage.completion_tokens,
                                             usage.total_tokens],
        "request_id": result.request_id,
    }, ensure_ascii=False)


def result_from_json(text: str) -> ChatResult:
    """A hit rebuilt from :func:`result_to_json`'s output, marked ``cached=True``.

    Raises:
        ValueError: the text is not a stored result (a damaged entry).
    """
    try:
        data = json.loads(text)
        usage = data["usage"]
        content, model = data["content"], data["model"]
        if not isinstance(content, str) or not isinstance(model, str):
            raise TypeError("content and model must be strings")
        return ChatResult(
            content=content,
            model=model,
            finish_reason=data["finish_reason"],
            usage=None if usage is None else Usage(*(int(n) for n in usage)),
            request_id=data["request_id"],
            cached=True,
        )
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"not a stored result: {error}") from None


class ResponseCache(ABC):
    """Where answers are kept. Implementations are thread-safe and never raise from
    :meth:`get` or :meth:`put`."""

    @abstractmethod
    def get(self, key: str) -> Optional[ChatResult]:
        """The stored answer for ``key`` (with ``cached=True``), or None: missing,
        expired, or the cache failed (logged)."""

    @abstractmethod
    def put(self, key: str, result: ChatResult) -> None:
        """Store ``result`` under ``key``, replacing any older entry; evicts to stay
        within ``max_entries``."""

    def close(self) -> None:  # noqa: B027 - optional hook, most caches hold nothing to release
        """Release files and connections. Safe to call twice."""


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


def build_cache(config: CacheConfig, *, clock: Optional[Clock] = None) -> Optional[ResponseCache]:
    """The cache ``config`` asks for, or None for ``backend = "none"``.

    Never raises for an unusable SQLite file: :class:`SqliteCache` warns and starts fresh.
    """
    if config.backend == "none":
        return None
    if config.backend == "memory":
        return MemoryCache(max_entries=config.max_entries, ttl_seconds=config.ttl_seconds,
                           clock=clock or time.monotonic)
    from ._sqlite_cache import SqliteCache

    assert config.path is not None  # CacheConfig requires it for sqlite
    return SqliteCache(config.path, max_entries=config.max_entries,
                       ttl_seconds=config.ttl_seconds, clock=clock or time.time)


def __getattr__(name: str) -> Any:
    # SqliteCache has its own module (one concept per module) but belongs to this public
    # API. Imported on first use: that module builds on this one, so a top-level import
    # here would be circular.
    if name == "SqliteCache":
        from ._sqlite_cache import SqliteCache

        return SqliteCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
