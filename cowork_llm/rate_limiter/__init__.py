"""The rate limiter: a FIFO gate in front of a backend's buckets, one per quota key.

- :mod:`._gate`: :class:`RateLimiter` (arrival order, ``max_concurrent``, pauses,
  reserved starts).
- :mod:`._slot`: the :class:`Slot` a request holds while it runs.
- :mod:`._provider_view`: what was learned from the provider's rate-limit headers.
- :mod:`._registry`: the process-wide limiters, one per ``rate_limit.key``
  (:func:`init_global_rate_limiter`, :func:`get_global_rate_limiter`).
- :mod:`._cancel`: :func:`cancel_on`, calling off a thread's waits.
- :mod:`._rates`: the rates and token estimates a configuration turns into.
- :mod:`.backends`: where the shared state lives (memory, sqlite, redis).
"""

from ._cancel import cancel_on
from ._gate import RateLimiter
from ._registry import get_global_rate_limiter, init_global_rate_limiter
from ._slot import Slot

__all__ = [
    "cancel_on",
    "get_global_rate_limiter",
    "init_global_rate_limiter",
    "RateLimiter",
    "Slot",
]
