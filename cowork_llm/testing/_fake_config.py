"""LlmConfig and COWORK_LLM_* variables pointing at a FakeLlmServer."""

import dataclasses
import json
from typing import Any, Dict, Optional

from ..config._sections import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig

_SECTIONS: Dict[str, Any] = {"model": ModelConfig, "rate_limit": RateLimitConfig, "retry": RetryConfig}
_WHOLE = ("model", "rate_limit", "retry", "cache", "embeddings", "pricing", "fallback")
_FIELD_SECTION = {f.name: section for section, cls in _SECTIONS.items()
                  for f in dataclasses.fields(cls)}


def fake_config(base_url: str, api_key: str, model_name: str, limiter_key: str,
                overrides: Dict[str, Any]) -> LlmConfig:
    """Test-friendly settings for the server, with ``overrides`` routed to their section.

    Raises:
        TypeError: an unknown keyword, or a field given together with its whole section.
        ConfigError: an override the config model rejects.
    """
    defaults: Dict[str, Dict[str, Any]] = {
        "model": {"base_url": base_url, "api_key": api_key, "model_name": model_name,
                  "timeout_seconds": 10.0},
        "rate_limit": {"min_interval_seconds": 0.0, "key": limiter_key},
        "retry": {"initial_wait_seconds": 0.01, "max_wait_seconds": 0.1},
    }
    whole: Dict[str, Any] = {}
    for name, value in overrides.items():
        if name in _WHOLE:
            whole[name] = value
        elif name in _FIELD_SECTION:
            defaults[_FIELD_SECTION[name]][name] = value
        else:
            known = ", ".join(sorted(set(_FIELD_SECTION) | set(_WHOLE)))
            raise TypeError(f"FakeLlmServer.config() got an unknown keyword {name!r}; known: {known}")
    for section, cls in _SECTIONS.items():
        if section in whole:
            clash = [n for n in overrides if _FIELD_SECTION.get(n) == section]
            if clash:
                raise TypeError(f"FakeLlmServer.config(): give {section}= or {', '.join(clash)}, not both")
        else:
            whole[section] = cls(**defaults[section])
    return LlmConfig(**whole)


def _env_value(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_env(config: LlmConfig) -> Dict[str, str]:
    """The COWORK_LLM_* variables that describe ``config``: every model field that is
    set, and every other field that differs from its default.

    Raises:
        ValueError: the config holds something variables cannot say (extra keys,
            fallbacks, pricing).
    """
    if config.model.extra_api_keys or config.fallback or config.pricing:
        raise ValueError("FakeLlmServer.env(): extra_api_keys, fallback and pricing "
                         "cannot be expressed as COWORK_LLM_* variables; use a config file")
    env: Dict[str, str] = {}
    for section in ("model", "rate_limit", "retry", "cache", "embeddings"):
        values = getattr(config, section)
        prefix = "COWORK_LLM_" if section == "model" else f"COWORK_LLM_{section.upper()}_"
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            if f.name == "stop" and value:  # a JSON list, as COWORK_LLM_STOP reads it
                env[prefix + "STOP"] = json.dumps(list(value))
                continue
            if isinstance(value, tuple):
                continue
            if section != "model" and f.default is not dataclasses.MISSING and value == f.default:
                continue
            text = _env_value(value)
            if text is not None:
                env[prefix + f.name.upper()] = text
    return env
