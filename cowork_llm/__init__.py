"""cowork_llm: one thread-safe, rate-limited, retrying LLM client for synchronous Python.

Call :func:`create_llm_client` once and share the result between all threads:

>>> from cowork_llm import create_llm_client
>>> llm = create_llm_client()          # config.toml, else COWORK_LLM_* variables
>>> answer = llm.generate_content("Summarise this", system_prompt="Be brief")

The client (an :class:`Llm`) offers ``chat``, ``generate_content``, ``stream``,
``stream_content``, ``embed`` (vectors from the ``[llm.embeddings]`` model, in batches),
``usage()``, ``health()`` and ``close()``. Every request, retries
included, waits for a slot of the process-wide rate limiter for its ``rate_limit.key``.

Tools: plain Python functions are tools (their schema from type hints and docstring);
``llm.run_tools`` runs the loop — ask, run the tools the model calls, send the results
back, until it answers — each model step one rate-limited ``chat``:

>>> def get_weather(city: str) -> dict:
...     "Today's weather."
...     return {"city": city, "sky": "sunny"}
>>> run = llm.run_tools([{"role": "user", "content": "Weather in Oslo?"}], [get_weather])
>>> run.content, run.steps, run.messages   # the answer, each step's calls, the transcript

``chat(messages, tools=[...])`` alone returns ``ChatResult.tool_calls`` for you to run.

Configuration: :func:`load_config` reads ``config.toml`` (or ``--config``/
``COWORK_CONFIG``), then ``COWORK_LLM_*`` variables, then defaults; ``cowork-llm init``
shows the result and ``cowork-llm init --template`` writes a commented file.

Errors: everything raised on purpose is an :class:`LlmError`. :class:`ConfigError` (also
a ValueError) for the configuration, :class:`LimiterAcquireError` for the rate limiter,
:class:`LlmApiError` (with ``status_code``, ``request_id``, ``attempts``) for a request
that failed after its retries. Bad arguments raise ValueError before anything is sent.

Also: :class:`FallbackLlm` and :class:`HealthStatus` (loaded on first use),
``cowork_llm.batch.run_batch`` for resumable batch runs, ``cowork_llm.testing`` for
:class:`~cowork_llm.testing.MockLlm` and :class:`~cowork_llm.testing.FakeLlmServer`, and
the ``cowork-llm`` command (``python -m cowork_llm``). Logging goes to the ``cowork_llm``
logger; ``COWORK_LOG_LEVEL`` sets its level.
"""

import logging
from typing import TYPE_CHECKING, Any

from ._logging import configure_logging_from_env as _configure_logging_from_env
from ._version import __version__
from .client import RateLimitedLlm, create_llm_client
from .config import (
    CacheConfig,
    EmbeddingsConfig,
    LlmConfig,
    ModelConfig,
    ModelPrice,
    RateLimitConfig,
    RetryConfig,
    load_config,
)
from .errors import (
    AcquireCancelled,
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigError,
    ConfigNotFoundError,
    InvalidBaseUrlError,
    InvalidResponseError,
    LimiterAcquireError,
    LimiterBackendError,
    LlmApiError,
    LlmError,
    MaxStepsError,
    MissingApiKeyError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    TokenFieldRejectedError,
    ToolExecutionError,
    ToolLoopError,
    UnknownHostError,
    UntrustedCertificateError,
)
from .llm import Llm
from .rate_limiter import RateLimiter, get_global_rate_limiter, init_global_rate_limiter
from .request._options import ChatOptions
from .results import ChatResult, EmbeddingResult, ToolCall, Usage
from .streaming import ChatStream
from .usage import UsageSnapshot

if TYPE_CHECKING:
    from .client._fallback import FallbackLlm
    from .health import HealthStatus

# Loaded on first access: most programs use neither, and each costs start-up time
# (BENCHMARKS.md, start-up). Every name in __all__ still imports.
_LAZY_EXPORTS = {"FallbackLlm": ".client._fallback", "HealthStatus": ".health"}


def __getattr__(name: str) -> Any:
    """Load a lazy export (FallbackLlm, HealthStatus) on first access.

    Raises AttributeError for any other name, as a module does."""
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


logging.getLogger(__name__).addHandler(logging.NullHandler())
# COWORK_LOG_LEVEL; only reads one variable. An invalid value is told when a configuration
# is loaded or a client made (a RuntimeWarning), or by the CLI as one line of its own.
_configure_logging_from_env(warn=False)

__all__ = [
    "__version__",
    "AcquireCancelled",
    "ApiConnectionError",
    "ApiTimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CacheConfig",
    "ChatOptions",
    "ChatResult",
    "ChatStream",
    "ClientClosedError",
    "ConfigError",
    "ConfigNotFoundError",
    "create_llm_client",
    "EmbeddingResult",
    "EmbeddingsConfig",
    "FallbackLlm",
    "get_global_rate_limiter",
    "HealthStatus",
    "init_global_rate_limiter",
    "InvalidBaseUrlError",
    "InvalidResponseError",
    "LimiterAcquireError",
    "LimiterBackendError",
    "Llm",
    "LlmApiError",
    "LlmConfig",
    "LlmError",
    "load_config",
    "MaxStepsError",
    "MissingApiKeyError",
    "ModelConfig",
    "ModelPrice",
    "NotFoundError",
    "QuotaExceededError",
    "RateLimitConfig",
    "RateLimitedLlm",
    "RateLimiter",
    "RateLimitError",
    "RetryConfig",
    "ServerError",
    "TokenFieldRejectedError",
    "ToolCall",
    "ToolExecutionError",
    "ToolLoopError",
    "UnknownHostError",
    "UntrustedCertificateError",
    "Usage",
    "UsageSnapshot",
]
