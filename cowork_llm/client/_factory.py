"""create_llm_client(): configuration in, a shared rate-limited, retrying client out."""

import functools
import logging
import os
from typing import Optional, Sequence

from .._logging import warn_if_level_invalid
from ..config._loader import load_config
from ..config._sections import LlmConfig
from ..llm import Llm
from ..providers import build_embedder, build_provider
from ..rate_limiter._registry import init_global_rate_limiter
from ..retry import RetryPolicy
from ..telemetry import Observer, default_observers
from ..usage import UsageTracker
from ._rate_limited import RateLimitedLlm

__all__ = ["create_llm_client"]

logger = logging.getLogger(__name__)


def create_llm_client(
    config: Optional[LlmConfig] = None, *, path: "Optional[str | os.PathLike[str]]" = None,
    observers: Optional[Sequence[Observer]] = None,
) -> Llm:
    """A client for ``config`` (loaded with :func:`load_config(path) <load_config>`
    when None), safe to share between threads.

    The provider named by ``model.provider`` runs behind the process-wide limiter for
    ``rate_limit.key`` (shared with every other client using that key) and a retry
    policy built from ``retry``. With ``[[llm.fallback]]`` entries it is a
    :class:`~cowork_llm.client.FallbackLlm` that tries them in turn when the primary
    finally fails (each with a limiter of its own). Its usage totals are priced from ``pricing``; ``cache``
    chooses its response cache (none by default). ``observers`` watch every call
    (:mod:`cowork_llm.telemetry`); None means :func:`~cowork_llm.telemetry.default_observers`
    (OpenTelemetry when ``opentelemetry-api`` is installed, else none). ``embed()`` uses
    ``[llm.embeddings]`` (built on the first call) through the same limiter and retries.

    Raises:
        ConfigError: unchanged from loading or from building the provider or limiter.
        ValueError: both ``config`` and ``path`` were given.
    """
    warn_if_level_invalid()
    if config is None:
        config = load_config(path)
    elif path is not None:
        raise ValueError("create_llm_client takes a config or a path, not both")
    provider = build_provider(config.model)
    limiter = init_global_rate_limiter(config.rate_limit)
    cache = None
    if config.cache.backend != "none":  # the cache modules are loaded only when one is used
        from ..cache import build_cache

        cache = build_cache(config.cache)
    # The embeddings client is built on the first embed(): a chat-only user pays nothing.
    client = RateLimitedLlm(provider, limiter, RetryPolicy(config.retry),
                            usage=UsageTracker(config.pricing), cache=cache,
                            observers=default_observers() if observers is None else observers,
                            embeddings=functools.partial(build_embedder, config),
                            batch_size=config.embeddings.batch_size)
    limits = config.rate_limit
    logger.info(
        "LLM client: provider=%s model=%s host=%s; limits: min_interval=%gs "
        "max_concurrent=%d requests_per_minute=%s backend=%s key=%s; max_attempts=%d; "
        "cache=%s",
        config.model.provider, config.model.model_name, config.model.host,
        limits.min_interval_seconds, limits.max_concurrent, limits.requests_per_minute,
        limits.backend, limits.key, config.retry.max_attempts, config.cache.backend,
    )
    if not config.fallback:
        return client
    from ._fallback import build_fallback_chain  # import cost only for those who use it

    return build_fallback_chain(config, client)
