"""The retry policy: which failures are worth another attempt, how long to wait, and
when to give up. Built on tenacity from a :class:`RetryConfig`.

| Error                                   | Retried | Wait                                   |
|-----------------------------------------|---------|----------------------------------------|
| ServerError (5xx, 529)                  | yes     | Retry-After, else exponential + jitter |
| RateLimitError (429)                    | yes     | Retry-After, else exponential + jitter |
| ApiConnectionError, ApiTimeoutError     | yes     | exponential + jitter                   |
| UntrustedCertificateError (TLS), UnknownHostError (no such DNS name) | no |         |
| 401 for one key while another remains   | yes     | none (the next key is used at once)    |
| QuotaExceededError, 400/401/403/404/422 | no      |                                        |
| InvalidResponseError, ConfigError, ...  | no      |                                        |
| response_format answer not JSON or not  | only if | exponential + jitter                   |
| matching its schema                     | on_invalid_json = true                           |

``x-should-retry: true`` / ``false`` from the provider overrides the table both ways.

A Retry-After above ``max_retry_after_seconds`` fails at once. Retries stop after
``max_attempts`` attempts, or before a wait that would end past ``total_timeout_seconds``.
"""

import contextvars
import logging
import time
from typing import Callable, Optional, Tuple, TypeVar, Union

import tenacity

from . import _deadline
from .config._sections import RetryConfig
from .errors import (
    ApiConnectionError,
    ApiTimeoutError,
    InvalidResponseError,
    KeyRejectedError,
    LlmApiError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnknownHostError,
    UntrustedCertificateError,
)

__all__ = ["RetryPolicy", "is_retryable", "is_invalid_json", "describe_error"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_OnRetry = Optional[Callable[[BaseException, float], None]]
#: (model, prompt hash, on_retry) of the call in progress, for _before_sleep.
_call_context: "contextvars.ContextVar[Tuple[str, Union[str, Callable[[], str]], _OnRetry]]" = \
    contextvars.ContextVar("cowork_llm_retry_call")

_RETRYABLE = (ServerError, RateLimitError, ApiConnectionError, ApiTimeoutError)
_NOT_RETRYABLE = (QuotaExceededError, UntrustedCertificateError, UnknownHostError)

def is_retryable(exc: BaseException) -> bool:
    """True for the failures another attempt may fix: 5xx, 429 (not an exhausted quota),
    connection failures and timeouts, and a 401 for one key while the rotation still
    holds another (:class:`~cowork_llm.providers._keys.KeyRejectedError`).

    A provider's ``x-should-retry`` header overrides all of this, both ways, as the
    official SDKs obey it (``false``: never retried, whatever the status; ``true``:
    retried)."""
    if isinstance(exc, KeyRejectedError):
        return True
    said = getattr(exc, "should_retry", None) if isinstance(exc, LlmApiError) else None
    if said is not None:
        return bool(said)
    return isinstance(exc, _RETRYABLE) and not isinstance(exc, _NOT_RETRYABLE)


def is_invalid_json(exc: BaseException) -> bool:
    """True for a ``response_format`` answer that is not JSON or does not match its
    schema (an InvalidResponseError carrying the answer): retried only with
    ``retry.on_invalid_json = true``."""
    return isinstance(exc, InvalidResponseError) and exc.raw_text is not None


def describe_error(exc: BaseException) -> str:
    """``"ServerError 503"`` or ``"ApiConnectionError"``: the class and status, for logs."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} {status}" if status is not None else type(exc).__name__


class RetryPolicy:
    """Runs a call again while it fails with a retryable error. One policy may be shared
    by any number of threads: every :meth:`call` works on its own tenacity state.

    ``sleep`` is injectable so tests can record waits instead of sleeping.
    """

    def __init__(self, config: RetryConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=config.initial_wait_seconds,
            max=config.max_wait_seconds,
            jitter=config.initial_wait_seconds,
        )
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self._should_retry),
            wait=self._wait,
            before_sleep=self._before_sleep,
            # stop_before_delay: never start a wait that would end past the total budget
            # (it also covers stop_after_delay, as waits are never negative).
            stop=(tenacity.stop_after_attempt(config.max_attempts)
                  | tenacity.stop_before_delay(config.total_timeout_seconds)),
            sleep=sleep,
            reraise=True,
        )

    def call(
        self,
        fn: Callable[[], T],
        *,
        model: str,
        prompt_hash: Union[str, Callable[[], str]],
        on_retry: Optional[Callable[[BaseException, float], None]] = None,
    ) -> T:
        """Return ``fn()``, retrying retryable errors. ``on_retry(error, wait_seconds)``
        runs before each wait (the rate limiter uses it to pause on a Retry-After).
        ``prompt_hash`` (for the retry warnings) may be a function: it is then called
        only when a retry is logged.

        Raises:
            LlmApiError: the last error itself, with ``attempts`` set to the number of
                attempts made (1 when it was not retried).
            Exception: anything else ``fn`` raises, at once and unchanged.
        """
        attempts = 0
        # One Retrying serves every call (tenacity keeps its loop state per thread, and
        # builds it afresh at each step, so nested calls in one thread do not mix); what
        # is this call's own (for before_sleep) travels in a context variable.
        context = _call_context.set((model, prompt_hash, on_retry))
        deadline = _deadline.open_deadline(self.config.total_timeout_seconds)
        try:
            for attempt in self._retrying:
                with attempt:
                    attempts += 1
                    result = fn()
                if not attempt.retry_state.outcome.failed:  # type: ignore[union-attr]
                    return result
        except LlmApiError as error:
            error.attempts = attempts
            raise
        finally:
            _deadline.close_deadline(deadline)
            _call_context.reset(context)
        raise AssertionError("tenacity ended its loop without a result or an error")  # pragma: no cover

    def _before_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        """The WARNING before each wait, and the call's ``on_retry``."""
        model, prompt_hash, on_retry = _call_context.get()
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        wait = retry_state.upcoming_sleep
        logger.warning(
            "attempt %d of %d failed: %s; retrying in %.2fs (model=%s, prompt=%s)",
            retry_state.attempt_number, self.config.max_attempts,
            describe_error(error) if error else "?", wait, model,
            prompt_hash() if callable(prompt_hash) else prompt_hash,
        )
        if on_retry is not None and error is not None:
            on_retry(error, wait)

    def _should_retry(self, exc: BaseException) -> bool:
        if self.config.on_invalid_json and is_invalid_json(exc):
            return True  # another answer may well be valid JSON; the model was asked for it
        if not is_retryable(exc):
            return False
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after > self.config.max_retry_after_seconds:
            logger.warning(
                "%s asked to wait %.1fs, more than max_retry_after_seconds=%g: not retrying",
                describe_error(exc), retry_after, self.config.max_retry_after_seconds,
            )
            return False
        return True

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when the provider gave one, otherwise exponential backoff with jitter."""
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return float(self._backoff(state))

    def __repr__(self) -> str:
        return f"RetryPolicy({self.config!r})"

