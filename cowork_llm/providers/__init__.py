"""The providers: one module per wire protocol, named after ``ModelConfig.provider``.

The provider names are the configuration's own vocabulary (:data:`cowork_llm.config.PROVIDERS`,
checked when the config is built); the module of that name says which class speaks the
protocol (its ``CLIENT``) and is imported on first use, so an unused provider costs nothing.
Everything a provider knows about its service — paths, headers, versions, error shapes —
lives in this package.
"""

import importlib
from typing import Optional

from ..config._sections import ModelConfig
from ..llm import Llm
from ..secrets import resolve_api_keys

__all__ = ["build_provider"]


def build_provider(model: ModelConfig, *, api_key: Optional[str] = None,
                   section: str = "llm.model") -> Llm:
    """The client for ``model.provider``. ``api_key`` replaces ``model.api_key``;
    without it, ``api_key_command`` and ``keyring:`` keys are resolved here, once
    (:func:`cowork_llm.secrets.resolve_api_keys`). ``section`` names the model's
    settings in messages and in ``ConfigError.key`` (``llm.fallback[0]`` for a fallback).

    Raises:
        ConfigError: the provider's settings are unusable (see the provider class).
        MissingApiKeyError: a secret source failed.
    """
    cls = importlib.import_module(f".{model.provider}", __name__).CLIENT
    if api_key is None:
        model = resolve_api_keys(model, section=section)
    client: Llm = cls(model, api_key=api_key, section=section)
    return client
