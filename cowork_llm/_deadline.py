"""The deadline of the call in progress: ``retry.total_timeout_seconds`` bounds a whole
call (attempts and the waits between them), so each attempt may only use what is left.

The retry policy opens the deadline around a call; the providers read what remains when
they send an attempt. A context variable carries it, so nested calls (and other threads)
each see their own, and a provider used without a retry policy sees none.
"""

import contextvars
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

__all__ = ["call_deadline", "open_deadline", "close_deadline", "remaining", "current"]

# (monotonic deadline, the budget it was opened with, for messages)
_deadline: "contextvars.ContextVar[Optional[Tuple[float, float]]]" = contextvars.ContextVar(
    "cowork_llm_call_deadline", default=None)


def open_deadline(seconds: float) -> "contextvars.Token[Optional[Tuple[float, float]]]":
    """From now on the current call must end ``seconds`` from now (or earlier, when an
    enclosing call's deadline comes first); give the token to :func:`close_deadline`
    when the call ends. Raises nothing."""
    outer = _deadline.get()
    deadline = (time.monotonic() + seconds, seconds)
    if outer is not None and outer[0] < deadline[0]:
        deadline = outer
    return _deadline.set(deadline)


def close_deadline(token: "contextvars.Token[Optional[Tuple[float, float]]]") -> None:
    """The call that :func:`open_deadline` opened is over."""
    _deadline.reset(token)


@contextmanager
def call_deadline(seconds: float) -> Iterator[None]:
    """:func:`open_deadline` for the length of a ``with`` block."""
    token = open_deadline(seconds)
    try:
        yield
    finally:
        close_deadline(token)


def current() -> Optional[Tuple[float, float]]:
    """(monotonic deadline, budget in seconds) of the call in progress, or None."""
    return _deadline.get()


def remaining() -> Optional[float]:
    """Seconds left before the current call's deadline (0 or less when it has passed),
    or None outside a bounded call."""
    deadline = _deadline.get()
    return None if deadline is None else deadline[0] - time.monotonic()
