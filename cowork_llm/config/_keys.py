"""The settable configuration keys, and the COWORK_LLM_* variables that set them.

:data:`CONFIG_KEYS` is derived from the config dataclasses, so a new field is settable
from the file and the environment without touching the loader. This module also turns a
variable's text into the field's type, and holds the rules both sources share: an empty
value counts as unset, a list-valued ``api_key`` is a rotation of keys.
"""

import contextvars
import dataclasses
import json
import logging
import math
import os
import typing
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ..errors import ConfigError
from ._sections import CacheConfig, EmbeddingsConfig, ModelConfig, RateLimitConfig, RetryConfig

__all__ = ["ConfigKey", "CONFIG_KEYS", "SECTIONS", "KEYS_BY_SECTION", "variables_set",
           "parse_variable", "warn_unknown_variables", "close_match", "is_blank", "split_api_keys",
           "STRICT_VARIABLE", "strict_from_env", "unknown_setting", "STRICT"]

logger = logging.getLogger(__name__)

_ENV_PREFIX = "COWORK_LLM_"
SECTIONS: Dict[str, Any] = {"model": ModelConfig, "rate_limit": RateLimitConfig,
                            "retry": RetryConfig, "cache": CacheConfig, "embeddings": EmbeddingsConfig}
# Filled from a list-valued api_key, never set on its own.
_DERIVED_FIELDS = frozenset({"extra_api_keys"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
#: "1": unknown keys, sections and COWORK_LLM_* variables are errors, not warnings.
STRICT_VARIABLE = "COWORK_LLM_STRICT"
#: Whether the load_config running in this thread is strict (set by load_config).
STRICT: "contextvars.ContextVar[bool]" = contextvars.ContextVar("cowork_llm_strict_config",
                                                                 default=False)


def strict_from_env(environ: Optional[Mapping[str, str]] = None) -> bool:
    """COWORK_LLM_STRICT as a bool (unset or empty: False).

    Raises ConfigError for a value that is not a yes or a no."""
    raw = (os.environ if environ is None else environ).get(STRICT_VARIABLE, "").strip().lower()
    if not raw or raw in _FALSE_WORDS:
        return False
    if raw in _TRUE_WORDS:
        return True
    raise ConfigError(f"{STRICT_VARIABLE} must be 1 or 0 (true/false), got {raw!r}",
                      variable=STRICT_VARIABLE)


def unknown_setting(message: str, key: Optional[str] = None, variable: Optional[str] = None) -> None:
    """A key or variable nobody reads: a warning, or with strict checking an error.

    Raises ConfigError when the running load_config is strict."""
    if STRICT.get():
        raise ConfigError(f"{message} (unknown settings are errors with --strict or "
                          f"{STRICT_VARIABLE}=1)", key=key, variable=variable)
    logger.warning("%s", message)


class ConfigKey(NamedTuple):
    """One settable field: where it lives in the file and which variable sets it."""

    section: str
    name: str
    variable: str
    annotation: Any
    default: Any  # dataclasses.MISSING for a required field

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def _env_variable(section: str, name: str) -> str:
    middle = "" if section == "model" else f"{section.upper()}_"
    return f"{_ENV_PREFIX}{middle}{name.upper()}"


def _collect_keys() -> Tuple[ConfigKey, ...]:
    keys = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in _DERIVED_FIELDS:
                continue
            default = f.default
            if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            keys.append(ConfigKey(section, f.name, _env_variable(section, f.name), hints[f.name], default))
    return tuple(keys)


CONFIG_KEYS: Tuple[ConfigKey, ...] = _collect_keys()
KEYS_BY_SECTION: Dict[str, Tuple[ConfigKey, ...]] = {
    section: tuple(k for k in CONFIG_KEYS if k.section == section) for section in SECTIONS}
_KEYS_BY_VARIABLE = {k.variable: k for k in CONFIG_KEYS}


def variables_set(environ: Mapping[str, str]) -> Dict[str, str]:
    """The known COWORK_LLM_* variables with a non-blank value, stripped."""
    return {name: value.strip() for name, value in environ.items()
            if name in _KEYS_BY_VARIABLE and value.strip()}


def parse_variable(key: ConfigKey, raw: str) -> Any:
    """Turn a variable's text into the field's type. Raises ConfigError naming the variable."""
    expected = key.annotation
    if typing.get_origin(expected) is typing.Union:  # Optional[X]
        if raw.lower() == "none":
            return None
        expected = next(a for a in typing.get_args(expected) if a is not type(None))
    if expected is bool:
        if raw.lower() in _TRUE_WORDS:
            return True
        if raw.lower() in _FALSE_WORDS:
            return False
        raise ConfigError(f"{key.variable} must be true or false (or 1/0, yes/no), got {raw!r}")
    if expected is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key.variable} must be an integer, got {raw!r}") from None
    if expected is float:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ConfigError(f"{key.variable} must be a finite number, got {raw!r}")
        return number
    if key.name == "stop":  # a JSON list of stop sequences, or one sequence as is
        if raw.startswith("["):
            try:
                return json.loads(raw)
            except ValueError:
                raise ConfigError(f"{key.variable} must be one stop sequence or a JSON list of them, "
                                  f"e.g. '[\"\\n\\n\", \"END\"]', got {raw!r}") from None
        return raw
    if key.path == "model.api_key":  # "k1,k2" is a rotation of keys
        keys = [part.strip() for part in raw.split(",") if part.strip()]
        # One key with a stray comma ("sk-...,") is that key, not a key ending in ",".
        return keys if len(keys) > 1 else (keys[0] if keys else raw)
    return raw


def close_match(name: str, candidates: List[str], cutoff: float) -> Optional[str]:
    """The candidate ``name`` was probably meant to be, for a "did you mean" hint.
    difflib is imported here: only a misspelt key or variable needs it."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """Log a warning (with a "did you mean") for each COWORK_LLM_* variable no key reads.
    Raises ConfigError instead when the running load_config is strict."""
    for name in environ:
        if name.startswith(_ENV_PREFIX) and name not in _KEYS_BY_VARIABLE and name != STRICT_VARIABLE:
            close = close_match(name, list(_KEYS_BY_VARIABLE), 0.8)
            hint = f"; did you mean {close}?" if close else ""
            unknown_setting(f"unknown variable {name} is ignored{hint}", variable=name)


def is_blank(value: Any) -> bool:
    """Whether a value counts as unset: None, an empty string or an empty list."""
    return value is None or (isinstance(value, (str, list)) and not value)


def split_api_keys(values: Dict[str, Any], prefix: str) -> None:
    """A list-valued api_key becomes api_key (the first) plus extra_api_keys (the rest).
    Raises ConfigError when the list holds something other than strings."""
    keys = values.get("api_key")
    if not isinstance(keys, list):
        return
    if not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{prefix}.api_key must be a string or a list of strings")
    values["api_key"], values["extra_api_keys"] = keys[0], tuple(keys[1:])
