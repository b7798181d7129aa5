"""What :class:`~cowork_llm.client.RateLimitedLlm` tells its observers
(:mod:`cowork_llm.telemetry`) about a call before it starts: the
:class:`~cowork_llm.telemetry._observer.CallInfo` (model, server, limiter key, options)
and the call's :class:`~._accounting.CallRecord` with their observations started.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Sequence
from urllib.parse import urlsplit

from ..config._sections import ModelConfig
from ..request._options import ChatOptions
from ..telemetry._observer import CallInfo, start_observations
from ._accounting import CallRecord

if TYPE_CHECKING:
    from ._rate_limited import RateLimitedLlm

__all__ = ["new_record", "observations_of"]

# The per-call options observers are told, as sent (None: the model config's default).
_OPTIONS = ("temperature", "max_tokens", "top_p", "seed", "stop")


def new_record(client: "RateLimitedLlm", messages: List[Dict[str, Any]], options: ChatOptions, *,
               stream: bool) -> CallRecord:
    """The chat call's record, with each observer's observation of it started."""
    record = CallRecord(messages, max_attempts=client._max_attempts)
    if client.observers:
        record.observations = start_observations(
            client.observers, _call_info(client, "chat", messages,
                                         {name: getattr(options, name) for name in _OPTIONS},
                                         stream=stream))
    return record


def observations_of(client: "RateLimitedLlm", operation: str, model_config: Any, model_name: str,
                    options: Dict[str, Any], messages: Sequence[Any] = ()) -> List[Any]:
    """The observers' views of a call other than chat (``embeddings``, ``execute_tool``)
    of ``model_config`` (an HTTP provider's ModelConfig, else None) — empty when
    nobody observes. Never raises."""
    if not client.observers:
        return []
    if not isinstance(model_config, ModelConfig):
        info = CallInfo(operation, model_name, limiter_key=client.limiter.config.key,
                        options=options, messages=messages)
    else:
        parts = urlsplit(model_config.base_url)
        info = CallInfo(operation, model_name, model_config.provider, parts.hostname,
                        parts.port or (443 if parts.scheme == "https" else 80),
                        client.limiter.config.key, options, False, messages)
    return start_observations(client.observers, info)


def _call_info(client: "RateLimitedLlm", operation: str, messages: Sequence[Any],
              options: Dict[str, Any], *, stream: bool = False) -> CallInfo:
    """What observers are told about a call before it starts; ``options`` as the
    caller gave them (None: the configured default, filled in here)."""
    model = client._model_config
    if model is None:  # not an HTTP provider (a MockLlm, a custom Llm): its model if it says
        inner_model = getattr(client.inner, "model", None)
        name = inner_model if isinstance(inner_model, str) and inner_model else client._model_name
        return CallInfo(operation, name, limiter_key=client.limiter.config.key,
                        options=options, stream=stream, messages=messages)
    sent = dict(options)
    for name in _OPTIONS:
        if sent.get(name) is None:
            sent[name] = getattr(model, name, None)
    parts = urlsplit(model.base_url)
    return CallInfo(operation, model.model_name, model.provider, parts.hostname,
                    parts.port or (443 if parts.scheme == "https" else 80),
                    client.limiter.config.key, sent, stream, messages)
