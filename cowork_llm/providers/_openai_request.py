"""A chat request in OpenAI's chat-completions wire format (``CreateChatCompletionRequest``),
and the one 400 that says the token-limit field was the wrong one.

The messages are already in OpenAI's vocabulary (:mod:`cowork_llm.request`), so they go
out as checked; the options go out under the API's own names. Unset options are left
out of the body, never sent as null.
"""

from typing import Any, Dict, List, Mapping, Optional

from ..config._sections import ModelConfig
from ..request._options import ChatOptions

__all__ = ["openai_body", "configured_token_field", "is_token_field_error", "OPENAI_HOSTS"]

#: Hosts whose API takes ``max_completion_tokens`` (OpenAI deprecated ``max_tokens`` for
#: chat completions; its reasoning models reject it). Azure OpenAI resources are
#: ``<name>.openai.azure.com``.
OPENAI_HOSTS = ("api.openai.com",)
_AZURE_SUFFIX = ".openai.azure.com"


def configured_token_field(config: ModelConfig) -> str:
    """The field ``max_tokens`` goes out as, by ``max_tokens_field`` ("auto":
    ``max_completion_tokens`` for OpenAI and Azure OpenAI hosts, ``max_tokens`` for other
    compatible servers, which mostly know only that one)."""
    if config.max_tokens_field != "auto":
        return config.max_tokens_field
    host = config.host.lower()
    if host in OPENAI_HOSTS or host.endswith(_AZURE_SUFFIX):
        return "max_completion_tokens"
    return "max_tokens"


def openai_body(model_name: str, messages: List[Dict[str, Any]], options: ChatOptions, *,
                token_field: str = "max_tokens", stream: bool = False) -> Dict[str, Any]:
    """The JSON body. ``options`` already carry the configured defaults; ``extra_body``
    is merged last, so it can set anything not modelled here."""
    # is_error is ours (Anthropic's mark of a failed tool); OpenAI's tool messages have none
    body: Dict[str, Any] = {"model": model_name,
                            "messages": [_without_is_error(m) for m in messages]}
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.max_tokens is not None:
        body[token_field] = options.max_tokens
    if options.stop is not None:
        body["stop"] = list(options.stop)
    if options.seed is not None:
        body["seed"] = options.seed
    if options.response_format is not None:
        body["response_format"] = options.response_format.to_openai()
    if options.reasoning_effort is not None:
        body["reasoning_effort"] = options.reasoning_effort
    if options.tools is not None:
        body["tools"] = [dict(tool) for tool in options.tools]
    if options.tool_choice is not None:
        body["tool_choice"] = options.tool_choice
    if options.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = options.parallel_tool_calls
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # usage arrives in a last chunk
    if options.extra_body:
        body.update(options.extra_body)
    return body


def _without_is_error(message: Dict[str, Any]) -> Dict[str, Any]:
    if "is_error" not in message:
        return message
    return {key: value for key, value in message.items() if key != "is_error"}


def is_token_field_error(status: int, error: Mapping[str, Any], sent: Optional[Mapping[str, Any]]) -> bool:
    """Whether a response is OpenAI's 400 for ``max_tokens`` on a model that takes only
    ``max_completion_tokens``::

        {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with
         this model. Use 'max_completion_tokens' instead.", "type": "invalid_request_error",
         "param": "max_tokens", "code": "unsupported_parameter"}}

    ``error`` is the body's ``error`` object; ``sent`` the body we sent (only a body that
    carried ``max_tokens`` can have been refused for it)."""
    if status != 400 or not sent or "max_tokens" not in sent:
        return False
    message = error.get("message")
    says_use_other = isinstance(message, str) and "max_completion_tokens" in message
    unsupported = error.get("code") == "unsupported_parameter"
    return error.get("param") == "max_tokens" and (unsupported or says_use_other)
