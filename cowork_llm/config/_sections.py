"""The configuration model: immutable dataclasses, validated when built; here the whole
(:class:`LlmConfig`) and the sections too small for a module of their own (retry, cache,
pricing). The model and embeddings sections are in :mod:`._model`, the rate limit's in
:mod:`._rate_limit`; every section and name list is importable from here.

dataclasses-json gives them ``to_dict``/``from_dict``, but it converts loosely and
validates nothing, so every class checks its own fields in ``__post_init__`` and raises
:class:`~cowork_llm.errors.ConfigError` naming the key (``llm.model.temperature``); what
they share (type checks, the error, the masked repr) is :mod:`._base`'s. The checks of
single values (types, URLs, keys, the one-year cap) and the masking of secrets live in
:mod:`._checks`; the sections hold the rules between fields. Loading from files and the
environment is :mod:`._loader`'s job.

This module must not use ``from __future__ import annotations``: dataclasses-json
reads the real annotations.
"""

import typing
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..errors import ConfigError
from ._base import Section
from ._checks import check_at_most_a_year, mask_secret, mask_url_password
from ._model import MAX_TOKENS_FIELDS, PROVIDERS, EmbeddingsConfig, ModelConfig
from ._rate_limit import CONCURRENCY_SCOPES, LIMITER_BACKENDS, PACES, RateLimitConfig

__all__ = ["ModelConfig", "RateLimitConfig", "RetryConfig", "CacheConfig", "EmbeddingsConfig", "ModelPrice",
           "LlmConfig",
           "PROVIDERS", "MAX_TOKENS_FIELDS", "LIMITER_BACKENDS", "CONCURRENCY_SCOPES", "CACHE_BACKENDS",
           "PACES",
           "mask_secret", "mask_url_password"]  # the masking helpers live in ._checks

CACHE_BACKENDS = ("none", "memory", "sqlite")


@dataclass(frozen=True, repr=False)
class RetryConfig(Section):
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
class CacheConfig(Section):
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
class ModelPrice(Section):
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
class LlmConfig(Section):
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
