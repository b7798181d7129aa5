"""The sections that say where and how to reach a model: ``[llm.model]``
(:class:`ModelConfig`, also each ``[[llm.fallback]]`` entry) and ``[llm.embeddings]``
(:class:`EmbeddingsConfig`), with the names of the providers.

Not ``from __future__ import annotations``: dataclasses-json reads the real annotations.
"""

import typing
from dataclasses import dataclass
from typing import Optional, Tuple
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..request._options import check_reasoning_effort, check_seed, check_stop, check_top_p
from ._base import Section
from ._checks import check_api_keys, check_at_most_a_year, check_base_url

__all__ = ["ModelConfig", "EmbeddingsConfig", "PROVIDERS", "MAX_TOKENS_FIELDS"]

PROVIDERS = ("openai", "anthropic")
#: ``llm.model.max_tokens_field``: which field carries the token limit to an OpenAI-
#: compatible server ("auto": max_completion_tokens for OpenAI and Azure OpenAI hosts,
#: max_tokens elsewhere).
MAX_TOKENS_FIELDS = ("auto", "max_completion_tokens", "max_tokens")


@dataclass(frozen=True, repr=False)
class ModelConfig(Section):
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
class EmbeddingsConfig(Section):
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
