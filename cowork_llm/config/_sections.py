"""The configuration model: immutable dataclasses, validated when built.

dataclasses-json gives them ``to_dict``/``from_dict``, but it converts loosely and
validates nothing, so every class checks its own fields in ``__post_init__`` and raises
:class:`~cowork_llm.errors.ConfigError` naming the key (``llm.model.temperature``).
The checks of single values (types, URLs, keys, the one-year cap) and the masking of
secrets live in :mod:`._checks`; this module holds the rules between
fields. Loading from files and the environment is :mod:`._loader`'s job.

This module must not use ``from __future__ import annotations``: dataclasses-json
reads the real annotations.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple
from urllib.parse import urlsplit

from dataclasses_json import DataClassJsonMixin

from ..errors import ConfigError
from ..request._options import check_reasoning_effort, check_seed, check_stop, check_top_p
from ._checks import (
    check_api_keys,
    check_at_most_a_year,
    check_base_url,
    check_type,
    mask_secret,
    mask_url_password,
    masked_repr,
    type_hints,
)

__all__ = ["ModelConfig", "RateLimitConfig", "RetryConfig", "CacheConfig", "EmbeddingsConfig", "ModelPrice",
           "LlmConfig",
           "PROVIDERS", "MAX_TOKENS_FIELDS", "LIMITER_BACKENDS", "CONCURRENCY_SCOPES", "CACHE_BACKENDS",
           "PACES",
           "mask_secret", "mask_url_password"]  # the masking helpers live in ._checks

PROVIDERS = ("openai", "anthropic")
#: ``llm.model.max_tokens_field``: which field carries the token limit to an OpenAI-
#: compatible server ("auto": max_completion_tokens for OpenAI and Azure OpenAI hosts,
#: max_tokens elsewhere).
MAX_TOKENS_FIELDS = ("auto", "max_completion_tokens", "max_tokens")
LIMITER_BACKENDS = ("memory", "sqlite", "redis")
#: ``rate_limit.max_concurrent_scope``: the cap per process, or across the backend's group.
CONCURRENCY_SCOPES = ("process", "shared")
# How the learned provider limits admit requests: "bucket" whenever the modelled bucket
# has room; "even" also spreads starts over the window (600 RPM: one every 100 ms).
PACES = ("bucket", "even")
CACHE_BACKENDS = ("none", "memory", "sqlite")


class _Section(DataClassJsonMixin):
    """Shared behaviour: type checks from annotations, masked repr."""

    _section: typing.ClassVar[str] = "llm"

    def _check_types(self) -> None:
        hints = type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_type(self._section, f.name, getattr(self, f.name), hints[f.name])

    def _fail(self, name: str, rule: str) -> None:
        raise ConfigError(f"{self._section}.{name} {rule}, got {getattr(self, name)!r}",
                          key=f"{self._section}.{name}")

    def __repr__(self) -> str:
        parts = [f"{f.name}={masked_repr(f.name, getattr(self, f.name))}"
                 for f in dataclasses.fields(self) if f.repr]  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class ModelConfig(_Section):
    """Where and how to reach one model.

    Raises ConfigError (InvalidBaseUrlError, MissingApiKeyError) when a field is invalid.
    """

    base_url: str
    api_key: str
    model_name: str
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    provider: str = "openai"
    timeout_seconds: float = 60.0
    allow_insecure_http: bool = False
    # Further keys tried in turn on a 429 or 401 (``api_key = ["k1", "k2"]`` in TOML).
    extra_api_keys: Tuple[str, ...] = ()
    # A command whose stdout is the key, run once when the client is created.
    api_key_command: Optional[str] = None
    # A CA bundle file for private certificate authorities; verification stays on.
    ca_bundle: Optional[str] = None
    # Defaults for the per-call options of the same names (a call's value wins).
    top_p: Optional[float] = None
    stop: Tuple[str, ...] = ()
    seed: Optional[int] = None
    reasoning_effort: Optional[str] = None
    max_tokens_field: str = "auto"
    # A stream that sends no content piece for this long fails (keep-alives do not count).
    stream_idle_timeout_seconds: float = 120.0
    # The longest a stream may stay open, however steadily it sends.
    stream_timeout_seconds: float = 600.0
    # The most bytes one answer may have after decompression (32 MiB); more drops the connection.
    max_response_bytes: int = 32 * 1024 * 1024

    _section: typing.ClassVar[str] = "llm.model"

    def __post_init__(self) -> None:
        self._check_types()
        check_base_url(self._section, self.base_url)
        check_api_keys(self._section, self.api_keys, has_command=bool(self.api_key_command))
        if not self.model_name.strip():
            self._fail("model_name", "must not be empty")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            self._fail("temperature", "must be between 0 and 2")
        if self.max_tokens is not None and self.max_tokens < 1:
            self._fail("max_tokens", "must be at least 1")
        if self.provider not in PROVIDERS:
            self._fail("provider", f"must be one of {', '.join(PROVIDERS)}")
        for name in ("timeout_seconds", "stream_idle_timeout_seconds", "stream_timeout_seconds"):
            if not getattr(self, name) > 0:
                self._fail(name, "must be greater than 0")
        if self.max_response_bytes < 1024:
            self._fail("max_response_bytes", "must be at least 1024 (bytes)")
        check_at_most_a_year(self._section, timeout_seconds=self.timeout_seconds,
                             stream_idle_timeout_seconds=self.stream_idle_timeout_seconds,
                             stream_timeout_seconds=self.stream_timeout_seconds)
        self._check_request_defaults()

    def _check_request_defaults(self) -> None:
        """The option defaults, by the same rules as a call's options."""
        stop = self.stop
        if isinstance(stop, (str, list)):  # TOML gives a list; a single string is one stop
            object.__setattr__(self, "stop", (stop,) if isinstance(stop, str) else tuple(stop))
        for name, check in (("top_p", check_top_p), ("seed", check_seed),
                            ("reasoning_effort", check_reasoning_effort), ("stop", check_stop)):
            value = getattr(self, name)
            if value is None or value == ():
                continue
            try:
                check(value)
            except ValueError as error:
                raise ConfigError(f"{self._section}.{error}", key=f"{self._section}.{name}") from None
        if self.max_tokens_field not in MAX_TOKENS_FIELDS:
            self._fail("max_tokens_field", f"must be one of {', '.join(MAX_TOKENS_FIELDS)}")

    @property
    def api_keys(self) -> Tuple[str, ...]:
        """Every key of the rotation, the primary first."""
        return (self.api_key,) + tuple(self.extra_api_keys)

    @property
    def host(self) -> str:
        """The host of base_url, for log lines (never the key)."""
        return urlsplit(self.base_url).hostname or ""


@dataclass(frozen=True, repr=False)
class RateLimitConfig(_Section):
    """How fast requests may start, and how many may be in flight.

    Raises ConfigError naming the key (``llm.<section>.<name>``) when a value is invalid.
    """

    min_interval_seconds: float = 2.0
    max_concurrent: int = 1
    max_concurrent_scope: str = "process"
    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None
    acquire_timeout_seconds: Optional[float] = None
    backend: str = "memory"
    path: Optional[str] = None
    redis_url: Optional[str] = None
    key: str = "default"
    adaptive: bool = True
    pace: str = "bucket"

    _section: typing.ClassVar[str] = "llm.rate_limit"

    def __post_init__(self) -> None:
        self._check_types()
        if self.min_interval_seconds < 0:
            self._fail("min_interval_seconds", "must be 0 or more")
        if self.max_concurrent < 1:
            self._fail("max_concurrent", "must be at least 1")
        if self.max_concurrent_scope not in CONCURRENCY_SCOPES:
            self._fail("max_concurrent_scope", f"must be one of {', '.join(CONCURRENCY_SCOPES)}")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            self._fail("requests_per_minute", "must be at least 1")
        if self.tokens_per_minute is not None and self.tokens_per_minute < 1:
            self._fail("tokens_per_minute", "must be at least 1")
        if self.acquire_timeout_seconds is not None and not self.acquire_timeout_seconds > 0:
            self._fail("acquire_timeout_seconds", "must be greater than 0")
        check_at_most_a_year(self._section, min_interval_seconds=self.min_interval_seconds,
                             acquire_timeout_seconds=self.acquire_timeout_seconds)
        if self.backend not in LIMITER_BACKENDS:
            self._fail("backend", f"must be one of {', '.join(LIMITER_BACKENDS)}")
        if self.backend == "sqlite" and not self.path:
            raise ConfigError(f"{self._section}.path is required when backend = 'sqlite': set "
                              "path under [llm.rate_limit] or COWORK_LLM_RATE_LIMIT_PATH",
                              key=f"{self._section}.path")
        if self.backend == "redis" and not self.redis_url:
            raise ConfigError(f"{self._section}.redis_url is required when backend = 'redis': set "
                              "redis_url under [llm.rate_limit] or COWORK_LLM_RATE_LIMIT_REDIS_URL",
                              key=f"{self._section}.redis_url")
        if not self.key.strip():
            self._fail("key", "must not be empty")
        if self.max_concurrent_scope == "shared" and self.backend == "memory":
            self._fail("max_concurrent_scope", "'shared' needs a shared backend: set "
                       "backend = 'sqlite' or 'redis' (memory is one process)")
        if self.pace not in PACES:
            self._fail("pace", f"must be one of {', '.join(PACES)}")


@dataclass(frozen=True, repr=False)
class RetryConfig(_Section):
    """How failed attempts are retried. Bounded by attempts *and* total time.

    Raises ConfigError naming the key (``llm.<section>.<name>``) when a value is invalid.
    """

    max_attempts: int = 5
    initial_wait_seconds: float = 1.0
    max_wait_seconds: float = 30.0
    max_retry_after_seconds: float = 120.0
    total_timeout_seconds: float = 300.0
    # Retry a response_format answer that is not JSON or does not match its schema.
    on_invalid_json: bool = False

    _section: typing.ClassVar[str] = "llm.retry"

    def __post_init__(self) -> None:
        self._check_types()
        if self.max_attempts < 1:
            self._fail("max_attempts", "must be at least 1")
        for name in ("initial_wait_seconds", "max_wait_seconds", "max_retry_after_seconds"):
            if getattr(self, name) < 0:
                self._fail(name, "must be 0 or more")
        if not self.total_timeout_seconds > 0:
            self._fail("total_timeout_seconds", "must be greater than 0")
        check_at_most_a_year(self._section, initial_wait_seconds=self.initial_wait_seconds,
                             max_wait_seconds=self.max_wait_seconds,
                             max_retry_after_seconds=self.max_retry_after_seconds,
                             total_timeout_seconds=self.total_timeout_seconds)


@dataclass(frozen=True, repr=False)
class CacheConfig(_Section):
    """The opt-in response cache (``backend = "none"`` turns it off).

    Raises ConfigError naming the key (``llm.<section>.<name>``) when a value is invalid.
    """

    backend: str = "none"
    path: Optional[str] = None
    ttl_seconds: float = 86400.0
    max_entries: int = 10000

    _section: typing.ClassVar[str] = "llm.cache"

    def __post_init__(self) -> None:
        self._check_types()
        if self.backend not in CACHE_BACKENDS:
            self._fail("backend", f"must be one of {', '.join(CACHE_BACKENDS)}")
        if self.backend == "sqlite" and not self.path:
            raise ConfigError(f"{self._section}.path is required when backend = 'sqlite': set "
                              "path under [llm.cache] or COWORK_LLM_CACHE_PATH", key=f"{self._section}.path")
        if not self.ttl_seconds > 0:
            self._fail("ttl_seconds", "must be greater than 0")
        if self.max_entries < 1:
            self._fail("max_entries", "must be at least 1")


@dataclass(frozen=True, repr=False)
class EmbeddingsConfig(_Section):
    """The embeddings model (``Llm.embed``). Unset ``base_url``, ``api_key`` and
    ``provider`` are those of ``[llm.model]``; the rest of the connection settings
    (timeout, CA bundle, insecure http) always are.

    Raises ConfigError naming the key (``llm.embeddings.<name>``) when a value is invalid.
    """

    model_name: Optional[str] = None
    base_url: Optional[str] = None
    api_key: Optional[str] = None
    provider: Optional[str] = None
    # Most texts sent in one request; a larger input is split (each request takes its
    # own limiter slot). OpenAI accepts at most 2048 inputs per request.
    batch_size: int = 256

    _section: typing.ClassVar[str] = "llm.embeddings"

    def __post_init__(self) -> None:
        self._check_types()
        if self.model_name is not None and not self.model_name.strip():
            self._fail("model_name", "must not be empty (leave it out to have no embeddings model)")
        if self.base_url is not None:
            check_base_url(self._section, self.base_url)
        if self.api_key is not None:
            check_api_keys(self._section, (self.api_key,), has_command=False)
        if self.provider is not None and self.provider not in PROVIDERS:
            self._fail("provider", f"must be one of {', '.join(PROVIDERS)}")
        if not 1 <= self.batch_size <= 2048:
            self._fail("batch_size", "must be from 1 to 2048 (OpenAI's most inputs per request)")


@dataclass(frozen=True, repr=False)
class ModelPrice(_Section):
    """What one model costs, in the account's currency per million tokens.

    Raises ConfigError when a price is negative or not a number.
    """

    input_per_million: float
    output_per_million: float
    # Prompt tokens read from the provider's prompt cache; None: priced as input.
    cached_input_per_million: Optional[float] = None

    _section: typing.ClassVar[str] = "llm.pricing"

    def __post_init__(self) -> None:
        self._check_types()
        if self.cached_input_per_million is not None and self.cached_input_per_million < 0:
            self._fail("cached_input_per_million", "must be 0 or more")
        if self.input_per_million < 0:
            self._fail("input_per_million", "must be 0 or more")
        if self.output_per_million < 0:
            self._fail("output_per_million", "must be 0 or more")


@dataclass(frozen=True, repr=False)
class LlmConfig(_Section):
    """The whole configuration: the model, its limits, retries, and the extras.

    ``sources`` maps each field path (``model.api_key``) to where its value came from:
    ``"file:<path>"``, ``"env:<VARIABLE>"`` or ``"default"``. Usually built by
    :func:`~cowork_llm.config.load_config`.

    Raises ConfigError when a section has the wrong type (each section checks its own
    values as it is built).
    """

    model: ModelConfig
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    pricing: Dict[str, ModelPrice] = field(default_factory=dict)
    fallback: Tuple[ModelConfig, ...] = ()
    sources: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        checks = [("model", ModelConfig), ("rate_limit", RateLimitConfig),
                  ("retry", RetryConfig), ("cache", CacheConfig), ("embeddings", EmbeddingsConfig)]
        for name, cls in checks:
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"llm.{name} must be a {cls.__name__}")
        if not all(isinstance(m, ModelConfig) for m in self.fallback):
            raise ConfigError("llm.fallback entries must be ModelConfig objects")

    def __hash__(self) -> int:  # the dict fields make the generated hash fail
        return hash((self.model, self.rate_limit, self.retry, self.cache, self.embeddings, self.fallback))
