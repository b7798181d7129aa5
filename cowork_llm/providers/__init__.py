"""The providers: one module per wire protocol, named after ``ModelConfig.provider``.

The provider names are the configuration's own vocabulary (:data:`cowork_llm.config.PROVIDERS`,
checked when the config is built); the module of that name says which class speaks the
protocol (its ``CLIENT``) and is imported on first use, so an unused provider costs nothing.
Everything a provider knows about its service — paths, headers, versions, error shapes —
lives in this package.
"""

import dataclasses
import importlib
from typing import Dict, Optional

from ..config._sections import LlmConfig, ModelConfig
from ..errors import ConfigError
from ..llm import Llm
from ..secrets import resolve_api_keys

__all__ = ["auth_headers", "build_embedder", "build_provider", "check_model_settings", "embeddings_model"]


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


def embeddings_model(config: LlmConfig) -> ModelConfig:
    """The model section for ``[llm.embeddings]``: its model_name, and its base_url, key
    and provider where set, else ``[llm.model]``'s (timeout, CA bundle and insecure-http
    setting always come from ``[llm.model]``).

    Raises:
        ConfigError: no embeddings model_name is set; the provider is Anthropic (no
            embeddings endpoint); or ``provider = "openai"`` is set for embeddings under
            an Anthropic ``[llm.model]`` without a base_url of its own.
    """
    embeddings, model = config.embeddings, config.model
    if embeddings.model_name is None:
        raise ConfigError("no embeddings model is configured: set model_name under [llm.embeddings] "
                          "(or COWORK_LLM_EMBEDDINGS_MODEL_NAME), e.g. text-embedding-3-small")
    provider = embeddings.provider or model.provider
    if provider == "anthropic":
        from .anthropic import NO_EMBEDDINGS

        raise ConfigError(NO_EMBEDDINGS)
    if model.provider == "anthropic" and embeddings.base_url is None:
        raise ConfigError("llm.embeddings.base_url is not set, and [llm.model]'s is Anthropic's: set "
                          "base_url (and api_key) under [llm.embeddings] for the OpenAI-compatible server")
    derived = dataclasses.replace(model, model_name=embeddings.model_name, provider=provider,
                                  base_url=embeddings.base_url or model.base_url)
    if embeddings.api_key is not None:  # a key of its own: none of [llm.model]'s key sources
        derived = dataclasses.replace(derived, api_key=embeddings.api_key, extra_api_keys=(),
                                      api_key_command=None)
    return derived


def build_embedder(config: LlmConfig) -> Llm:
    """The client that answers ``embed()`` for ``config`` (its key sources resolved, as
    :func:`build_provider` does).

    Raises:
        ConfigError: see :func:`embeddings_model`, and what :func:`build_provider` raises
            (the message then names ``llm.embeddings``).
    """
    model = embeddings_model(config)
    try:
        return build_provider(model)
    except ConfigError as error:
        raise type(error)(str(error).replace("llm.model.", "llm.embeddings.", 1)) from None


def auth_headers(provider: str, api_key: str) -> Dict[str, str]:
    """The headers that carry ``api_key`` (and the API version, where the protocol has
    one) to ``provider``, as its client sends them. Never raises for a known provider."""
    headers: Dict[str, str] = importlib.import_module(f".{provider}", __name__).auth_headers(api_key)
    return headers


def check_model_settings(model: ModelConfig, section: str = "llm.model") -> None:
    """The checks every HTTP provider runs on its settings before sending anything
    (``cowork-llm init`` runs them too). Imports the HTTP layer on first use.

    Raises:
        InvalidBaseUrlError: ``base_url`` ends in an endpoint path the client adds itself
            (``/chat/completions``, ``/messages``): drop the suffix.
        ConfigError: plain ``http://`` to a remote host without ``allow_insecure_http``,
            or a missing ``ca_bundle`` file.
    """
    from ._settings import check_model_settings as check

    check(model, section)
