"""cancel_on(): call off this thread's waits for a rate-limiter slot when an event is set.

A batch told to stop (Ctrl-C) must not send the requests of workers still queued in the
limiter: they have not started, so they can simply run next time. Inside
``with cancel_on(stop):``, :meth:`~cowork_llm.rate_limiter.RateLimiter.acquire` raises
:class:`~cowork_llm.errors.AcquireCancelled` once ``stop`` is set, instead of admitting
the request. A request already admitted is never affected.

The scope is per thread (each worker wraps its own calls) and scopes nest: the waits are
cancelled when any enclosing scope's event is set. The limiter notices a set event within
:data:`CANCEL_CHECK_SECONDS`: a plain ``threading.Event`` cannot tell anyone it was set
(and the code setting it may be a signal handler, which should not take limiter locks),
so a waiter inside a scope wakes up that often to look.
"""

import threading
from contextlib import contextmanager
from typing import Iterator, Tuple

__all__ = ["cancel_on", "active_cancel_events", "is_cancelled", "CANCEL_CHECK_SECONDS"]

#: Longest time a waiter inside a scope sleeps before looking at its events again.
CANCEL_CHECK_SECONDS = 0.1

_scopes = threading.local()


@contextmanager
def cancel_on(event: threading.Event) -> Iterator[None]:
    """Within the block, this thread's limiter waits end with AcquireCancelled once
    ``event`` is set (also if it is set already). Raises nothing itself."""
    outer: Tuple[threading.Event, ...] = getattr(_scopes, "events", ())
    _scopes.events = outer + (event,)
    try:
        yield
    finally:
        _scopes.events = outer


def active_cancel_events() -> Tuple[threading.Event, ...]:
    """The events of this thread's enclosing :func:`cancel_on` scopes (empty: none)."""
    return getattr(_scopes, "events", ())  # type: ignore[no-any-return]


def is_cancelled(events: Tuple[threading.Event, ...]) -> bool:
    """True when any of ``events`` is set."""
    return any(event.is_set() for event in events)
