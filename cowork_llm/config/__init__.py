"""Configuration: frozen, validated dataclasses and :func:`load_config`.

- :mod:`._sections`: ``LlmConfig``, the retry, cache and pricing sections, and every
  section's name in one place; :mod:`._model` (``ModelConfig``, ``EmbeddingsConfig``,
  the providers) and :mod:`._rate_limit` (``RateLimitConfig``, the limiter backends)
  the larger sections, with the rules between their fields; :mod:`._base` what every
  section shares (type checks, the error naming the key, the masked repr).
- :mod:`._checks`: checks of single values (types, URLs, keys, the one-year cap) and the
  masking of secrets.
- :mod:`._keys`: the table of keys and their ``COWORK_LLM_*`` variables.
- :mod:`._file`: reading ``config.toml`` (found, parsed, unknown keys reported).
- :mod:`._loader`: :func:`load_config`, merging file, environment and defaults per field.
"""

from ._checks import mask_secret, mask_url_password, masked_repr
from ._keys import CONFIG_KEYS, ConfigKey
from ._loader import CONFIG_PATH_VARIABLE, DEFAULT_CONFIG_FILE, load_config
from ._sections import (
    CACHE_BACKENDS,
    LIMITER_BACKENDS,
    PROVIDERS,
    CacheConfig,
    EmbeddingsConfig,
    LlmConfig,
    ModelConfig,
    ModelPrice,
    RateLimitConfig,
    RetryConfig,
)

__all__ = [
    "CACHE_BACKENDS",
    "CacheConfig",
    "CONFIG_KEYS",
    "CONFIG_PATH_VARIABLE",
    "ConfigKey",
    "DEFAULT_CONFIG_FILE",
    "EmbeddingsConfig",
    "LIMITER_BACKENDS",
    "LlmConfig",
    "load_config",
    "mask_secret",
    "mask_url_password",
    "masked_repr",
    "ModelConfig",
    "ModelPrice",
    "PROVIDERS",
    "RateLimitConfig",
    "RetryConfig",
]
