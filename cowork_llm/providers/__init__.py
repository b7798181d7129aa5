"""Provider registry: ``ModelConfig.provider`` names the class that speaks its wire
protocol. Adding a provider is one line in ``_PROVIDERS``."""

import importlib
from typing import Dict, Optional, Tuple

from ..config import ModelConfig
from ..errors import ConfigError
from ..llm import Llm
from ..secrets import resolve_api_keys

__all__ = ["build_provider", "provider_names"]

# name -> (module, class). Imported on first use, so an unused provider costs nothing.
_PROVIDERS: Dict[str, Tuple[str, str]] = {
    "openai": ("cowork_llm.providers.openai", "OpenAIClient"),
    "anthropic": ("cowork_llm.providers.anthropic", "AnthropicClient"),
}


def provider_names() -> Tuple[str, ...]:
    """The providers this installation can build."""
    return tuple(_PROVIDERS)


def build_provider(model: ModelConfig, *, api_key: Optional[str] = None) -> Llm:
    """The client for ``model.provider``. ``api_key`` replaces ``model.api_key``;
    without it, ``api_key_command`` and ``keyring:`` keys are resolved here, once
    (:func:`cowork_llm.secrets.resolve_api_keys`).

    Raises:
        ConfigError: the provider is not one this installation knows, or its settings
            are unusable (see the provider class).
        MissingApiKeyError: a secret source failed.
    """
    try:
        module_name, class_name = _PROVIDERS[model.provider]
    except KeyError:
        raise ConfigError(
            f"llm.model.provider {model.provider!r} is not supported here: use one of "
            f"{', '.join(_PROVIDERS)}"
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    if api_key is None:
        model = resolve_api_keys(model)
    client: Llm = cls(model, api_key=api_key)
    return client
