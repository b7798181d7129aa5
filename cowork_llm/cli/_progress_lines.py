"""What the CLI says while a call is slow: each retry and each wait for the rate limiter
of about a second or more, as one short line on stderr (``--quiet`` turns them off;
shorter ones pass without a word). An observer of the
client (:mod:`cowork_llm.telemetry`), so the library itself prints nothing.
"""

import sys
import threading
from typing import Callable, Optional

from ..errors import (
    ApiConnectionError,
    ApiTimeoutError,
    KeyRejectedError,
    LlmApiError,
    RateLimitError,
    ServerError,
)
from ..telemetry import CallInfo, CallObservation, Observer

__all__ = ["ProgressLines", "describe_failure"]

#: retries and limiter waits shorter than this pass without a word
MIN_WAIT_SHOWN_SECONDS = 1.0


def describe_failure(error: BaseException) -> str:
    """``server error 503``, ``rate limited (429)``, ``no answer in time``, ...: a few
    words for a failed attempt."""
    status = error.status_code if isinstance(error, LlmApiError) else None
    if isinstance(error, KeyRejectedError):
        return "the API key was rejected (401), trying the next key"
    if isinstance(error, RateLimitError):
        return f"rate limited ({status})" if status else "rate limited"
    if isinstance(error, ServerError):
        return f"server error {status}" if status else "server error"
    if isinstance(error, ApiTimeoutError):
        return "no answer in time"
    if isinstance(error, ApiConnectionError):
        return "could not connect"
    return f"{type(error).__name__} {status}" if status else type(error).__name__


class ProgressLines(Observer):
    """Prints a line per retry and limiter wait of at least ``min_wait_seconds``
    through ``say`` (stderr by default, one line at a time across threads)."""

    def __init__(self, say: Optional[Callable[[str], None]] = None, *,
                 prefix: str = "cowork-llm", min_wait_seconds: float = MIN_WAIT_SHOWN_SECONDS) -> None:
        self._lock = threading.Lock()
        self._say = say or self._to_stderr
        self.prefix = prefix
        self.min_wait_seconds = min_wait_seconds

    def _to_stderr(self, line: str) -> None:
        with self._lock:
            print(line, file=sys.stderr, flush=True)

    def start_call(self, call: CallInfo) -> "_Lines":
        return _Lines(self)


class _Lines(CallObservation):
    __slots__ = ("_owner",)

    def __init__(self, owner: ProgressLines) -> None:
        self._owner = owner

    def slot_granted(self, attempt: int, waited_seconds: float, queue_position: int) -> None:
        if waited_seconds >= self._owner.min_wait_seconds:
            self._owner._say(f"{self._owner.prefix}: waited {waited_seconds:.1f} s for the rate limit")

    def retrying(self, attempt: int, error: BaseException, wait_seconds: float,
                 max_attempts: int) -> None:
        if wait_seconds < self._owner.min_wait_seconds:
            return
        self._owner._say(f"{self._owner.prefix}: {describe_failure(error)}, retrying in "
                         f"{wait_seconds:.1f} s (attempt {attempt + 1} of {max_attempts})")
