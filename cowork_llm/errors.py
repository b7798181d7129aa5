"""The one exception tree of cowork_llm: every class the library raises on purpose.

Each class says whether the retry policy retries it, so a caller knows what reaching it
means. ``ConfigError`` carries ``key`` (and ``variable``); ``LlmApiError`` carries
``status_code``, ``request_id``, ``retry_after`` and ``attempts``; ``InvalidResponseError``
of a structured answer also ``raw_text`` and ``schema_error``::

    LlmError
    ├── ConfigError (also ValueError)
    │   ├── ConfigNotFoundError
    │   ├── InvalidBaseUrlError
    │   └── MissingApiKeyError
    ├── LimiterAcquireError
    │   ├── AcquireCancelled
    │   └── LimiterBackendError
    ├── ClientClosedError
    ├── LlmApiError
    │   ├── BadRequestError
    │   │   └── TokenFieldRejectedError
    │   ├── AuthenticationError
    │   │   └── KeyRejectedError
    │   ├── NotFoundError
    │   ├── RateLimitError
    │   │   └── QuotaExceededError
    │   ├── ServerError
    │   ├── ApiConnectionError
    │   │   ├── UntrustedCertificateError
    │   │   └── UnknownHostError
    │   ├── ApiTimeoutError
    │   └── InvalidResponseError
    ├── ToolLoopError
    │   ├── MaxStepsError
    │   └── ToolExecutionError
    └── BatchInputError, BatchOutputError (also ValueError)
                         └── OutputLockedError
"""

from typing import Any, Optional, Sequence

__all__ = [
    "LlmError",
    "ConfigError",
    "ConfigNotFoundError",
    "InvalidBaseUrlError",
    "MissingApiKeyError",
    "LimiterAcquireError",
    "AcquireCancelled",
    "LimiterBackendError",
    "ClientClosedError",
    "LlmApiError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "QuotaExceededError",
    "ServerError",
    "ApiConnectionError",
    "UntrustedCertificateError",
    "UnknownHostError",
    "ApiTimeoutError",
    "InvalidResponseError",
    "KeyRejectedError",
    "TokenFieldRejectedError",
    "ToolLoopError",
    "MaxStepsError",
    "ToolExecutionError",
    "BatchInputError",
    "BatchOutputError",
    "OutputLockedError",
]


class LlmError(Exception):
    """Root of every error cowork_llm raises on purpose."""


# --- configuration -------------------------------------------------------------------


class ConfigError(LlmError, ValueError):
    """The configuration is missing, malformed or inconsistent. Never retried.

    Attributes:
        key: the setting at fault, as a dotted path (``llm.model.temperature``), when one is.
        variable: the ``COWORK_LLM_*`` variable the bad value came from, when it did.
    """

    def __init__(self, message: str, *, key: Optional[str] = None, variable: Optional[str] = None) -> None:
        super().__init__(message)
        self.key = key
        self.variable = variable

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep key and variable across pickling (multiprocessing, concurrent.futures).
        return (_rebuild_config_error, (type(self), str(self), self.key, self.variable))


def _rebuild_config_error(cls, message, key, variable):  # type: ignore[no-untyped-def]
    return cls(message, key=key, variable=variable)


class ConfigNotFoundError(ConfigError):
    """Neither a config file nor COWORK_LLM_* variables were found. Never retried."""


class InvalidBaseUrlError(ConfigError):
    """``base_url`` is not an http(s) URL with a host. Never retried."""


class MissingApiKeyError(ConfigError):
    """No usable API key: unset, empty, or its secret source failed. Never retried."""


# --- rate limiter ----------------------------------------------------------------------


class LimiterAcquireError(LlmError):
    """No limiter slot could be had in time (``acquire_timeout_seconds``). Not retried:
    the wait already was the retry."""


class AcquireCancelled(LimiterAcquireError):
    """The wait for a slot was called off (:func:`~cowork_llm.rate_limiter.cancel_on`,
    e.g. a batch stopping) before the request was admitted: nothing was sent. A
    cancellation, not a failure: never retried, never failed over, not logged as an error."""


class LimiterBackendError(LimiterAcquireError):
    """The shared limiter backend (SQLite file, Redis) failed. Never silently ignored:
    running without a limit would bring back the 429s the limiter exists to prevent."""


class ClientClosedError(LlmError):
    """The client was closed (``close()``, or leaving its ``with`` block): the call was
    refused, or its wait for a limiter slot ended, without sending anything. Not retried:
    create a new client."""


# --- API -------------------------------------------------------------------------------


class LlmApiError(LlmError):
    """A request to the provider failed.

    Attributes:
        status_code: the HTTP status, or None when no response arrived.
        message: the provider's own message (or a description of the failure).
        request_id: the provider's request id (``x-request-id``), when it sent one.
        retry_after: seconds the provider asked us to wait, when it said.
        attempts: how many attempts were made before this error was raised.
        should_retry: the provider's ``x-should-retry`` header (True/False), None when
            it did not send one; the retry policy obeys it over the status. False also
            for a 5xx whose body says the server cannot read the input (llama.cpp
            given an image without a multimodal projector).
        rate_limits: the response's rate-limit headers (a
            :class:`~cowork_llm.limits.LimitReport`), None when it sent none.
    """

    should_retry: Optional[bool] = None
    rate_limits: Optional[Any] = None  # a cowork_llm.limits.LimitReport

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after = retry_after
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"status {self.status_code}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        if self.attempts > 1:
            parts.append(f"after {self.attempts} attempts")
        if len(parts) == 1:
            return self.message
        return f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"request_id={self.request_id!r}, retry_after={self.retry_after!r}, "
            f"attempts={self.attempts!r})"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep the keyword attributes across pickling (multiprocessing, concurrent.futures).
        return (
            _rebuild_api_error,
            (type(self), self.message, self.status_code, self.request_id,
             self.retry_after, self.attempts),
        )


def _rebuild_api_error(cls, message, status_code, request_id, retry_after, attempts):  # type: ignore[no-untyped-def]
    return cls(message, status_code=status_code, request_id=request_id,
               retry_after=retry_after, attempts=attempts)


class BadRequestError(LlmApiError):
    """400 or 422: the request itself is wrong. Never retried, never failed over."""


class AuthenticationError(LlmApiError):
    """401 or 403: the key is wrong or lacks permission. Not retried (another key in
    the rotation, or the next fallback, may be tried)."""


class KeyRejectedError(AuthenticationError):
    """401 for one key of a rotation while another key remains: that key is gone for
    good, and the retry policy retries at once (``retry_after == 0``) with the next one."""


class NotFoundError(LlmApiError):
    """404: wrong base_url or model name. Not retried."""


class RateLimitError(LlmApiError):
    """429: too many requests. Retried, after Retry-After when the provider gives one."""


class QuotaExceededError(RateLimitError):
    """429 with ``insufficient_quota``: the account is out of credit. Not retried."""


class ServerError(LlmApiError):
    """5xx (529 "overloaded" included). Retried."""


class ApiConnectionError(LlmApiError):
    """The connection failed or dropped before a response arrived. Retried."""


class UntrustedCertificateError(ApiConnectionError):
    """TLS verification failed: the server's certificate is not trusted (expired, wrong
    name, unknown authority). Not retried: another attempt meets the same certificate."""


class UnknownHostError(ApiConnectionError):
    """The host name of ``base_url`` does not exist (DNS answered "no such name"). Not
    retried; a DNS server that did not answer in time stays a retryable ApiConnectionError."""


class ApiTimeoutError(LlmApiError):
    """The connect or read timeout ran out. Retried."""


class InvalidResponseError(LlmApiError):
    """A 2xx answer we cannot use (not JSON, no choice, no content), or an answer to a
    ``response_format`` request that is not JSON or does not match the schema: then
    ``raw_text`` is the answer and ``schema_error`` the first problem found. Not retried
    (``retry.on_invalid_json = true`` retries the structured-output kind)."""

    def __init__(self, message: str, *, raw_text: Optional[str] = None,
                 schema_error: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.schema_error = schema_error

    def __reduce__(self):  # type: ignore[no-untyped-def]
        rebuild, args = super().__reduce__()
        return _rebuild_invalid_response, (*args, self.raw_text, self.schema_error)


def _rebuild_invalid_response(cls, message, status_code, request_id, retry_after, attempts,  # type: ignore[no-untyped-def]
                              raw_text, schema_error):
    return cls(message, status_code=status_code, request_id=request_id, retry_after=retry_after,
               attempts=attempts, raw_text=raw_text, schema_error=schema_error)


class TokenFieldRejectedError(BadRequestError):
    """400 from OpenAI: this model takes ``max_completion_tokens``, not ``max_tokens``.
    The client has remembered that for the model; the retry policy sends the request
    again at once (``retry_after == 0``) with the field the model accepts."""


# --- batch ------------------------------------------------------------------------------

#: How many invalid input lines a BatchInputError message lists.
_SHOWN_BATCH_PROBLEMS = 20


class ToolLoopError(LlmError):
    """``run_tools`` stopped before the model's final answer. ``messages`` is the
    transcript so far (ready to inspect, or to continue with); ``steps`` the
    :class:`~cowork_llm.tools.ToolStep` of each model call made. Not retried."""

    def __init__(self, message: str, *, messages: Sequence[Any] = (), steps: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.messages = list(messages)
        self.steps = list(steps)


class MaxStepsError(ToolLoopError):
    """The model still asked for tools after ``max_steps`` calls. Raise ``max_steps``,
    or continue from ``messages`` with another ``run_tools``."""


class ToolExecutionError(ToolLoopError):
    """A tool raised with ``on_tool_error="raise"``; the tool's exception is
    ``__cause__``, its name ``tool_name``."""

    def __init__(self, message: str, *, tool_name: str = "", messages: Sequence[Any] = (),
                 steps: Sequence[Any] = ()) -> None:
        super().__init__(message, messages=messages, steps=steps)
        self.tool_name = tool_name


class BatchInputError(LlmError, ValueError):
    """The batch input has invalid items; ``problems`` lists every one. Raised before any
    request is sent. Never retried: fix the input (or skip the invalid items)."""

    def __init__(self, source: str, problems: Sequence[Any]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:_SHOWN_BATCH_PROBLEMS])
        more = len(self.problems) - _SHOWN_BATCH_PROBLEMS
        if more > 0:
            shown += f"\n  ... and {more} more"
        super().__init__(f"{source}: {len(self.problems)} invalid item(s), nothing was sent:\n{shown}")


class BatchOutputError(LlmError, ValueError):
    """The output file holds a complete line that is not a batch result (another file
    given as ``-o``?). Nothing is changed; move the file away or fix that line."""


class OutputLockedError(BatchOutputError):
    """Another batch (in this process or another) is writing the output file right now.
    Nothing was read, changed or sent; wait for it to finish or choose another file."""
