"""The process-wide registry of rate limiters: one :class:`~cowork_llm.rate_limiter.RateLimiter`
per ``RateLimitConfig.key``, shared by every client of the process that talks to that
quota. The only global state of the library (DESIGN.md).

The public names are re-exported by :mod:`cowork_llm.rate_limiter`; import them from there.
"""

import logging
import threading
from typing import Dict, Optional

from ..config._sections import RateLimitConfig
from ._gate import RateLimiter

__all__ = ["init_global_rate_limiter", "get_global_rate_limiter", "_reset_global_rate_limiters"]

# The public module's logger: the name users filter on (the registry was part of it).
logger = logging.getLogger(__name__)

_registry: Dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def init_global_rate_limiter(config: Optional[RateLimitConfig] = None) -> RateLimiter:
    """The process-wide limiter for ``config.key``, created on first use.

    Every client of the process that talks to the same quota should share it. A later
    call for the same key with different settings logs a WARNING and returns the
    first limiter unchanged. Raises ConfigError when the backend is not available.
    """
    config = config if config is not None else RateLimitConfig()
    with _registry_lock:
        limiter = _registry.get(config.key)
        if limiter is None or limiter.closed:
            limiter = _registry[config.key] = RateLimiter(config)
        elif limiter.config != config:
            logger.warning(
                "rate limiter %r already exists with %r; keeping it and ignoring %r "
                "(use another llm.rate_limit.key for a separate quota)",
                config.key, limiter.config, config,
            )
        return limiter


def get_global_rate_limiter(key: str = "default") -> RateLimiter:
    """The process-wide limiter registered under ``key``.

    The ``"default"`` limiter always exists: when nobody initialised it, it is created
    with default settings (one request at a time, starts 2 s apart). Any other key must
    first be created with :func:`init_global_rate_limiter`, so a mistyped key cannot
    silently get a limit of its own.

    Raises:
        LookupError: no limiter is registered under ``key`` (other than "default").
    """
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is not None and not limiter.closed:
            return limiter
        if key != "default":
            known = ", ".join(repr(k) for k in sorted(_registry)) or "none"
            raise LookupError(
                f"no rate limiter registered under key {key!r} (registered: {known}); "
                f"call init_global_rate_limiter(RateLimitConfig(key={key!r}, ...)) first"
            )
    return init_global_rate_limiter(RateLimitConfig())


def _reset_global_rate_limiters() -> None:
    """Close and forget every registered limiter. For tests."""
    with _registry_lock:
        limiters = list(_registry.values())
        _registry.clear()
    for limiter in limiters:
        limiter.close()
