"""What FakeLlmServer checks in a request, and what it takes from it, for both APIs.

Like the real servers it refuses what they refuse, with their words: a missing model or
messages, a bad ``max_tokens``; and OpenAI's reasoning models (``o1*``, ``o3*``, ``o4*``,
``gpt-5*``) refuse ``max_tokens`` and a non-default ``temperature`` with OpenAI's exact 400
bodies. It takes the token limit (``max_tokens`` or ``max_completion_tokens``), the stop
sequences, and the structured-output schema (OpenAI ``response_format``, Anthropic
``output_config.format``). Pure functions: no sockets here.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._fake_protocol import ApiProblem, _check_model
from ._fake_tools import check_anthropic_tools, check_openai_tools

__all__ = ["ChatRequest", "parse_openai", "parse_anthropic", "is_reasoning_model",
           "MAX_TOKENS_UNSUPPORTED", "TEMPERATURE_UNSUPPORTED"]

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
#: OpenAI's 400 message for ``max_tokens`` sent to a reasoning model (param
#: ``max_tokens``, code ``unsupported_parameter``).
MAX_TOKENS_UNSUPPORTED = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                          "Use 'max_completion_tokens' instead.")
#: OpenAI's 400 message for a temperature other than 1 on a reasoning model (param
#: ``temperature``, code ``unsupported_value``).
TEMPERATURE_UNSUPPORTED = ("Unsupported value: 'temperature' does not support {value} with this model. "
                           "Only the default (1) value is supported.")


@dataclass(frozen=True)
class ChatRequest:
    """What both APIs ask for, after the checks. ``schema`` is the structured-output
    schema (``{"type": "object"}`` for OpenAI's json_object), None for plain text."""

    model: str
    messages: List[Dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: Optional[int]
    stop: Tuple[str, ...] = ()
    schema: Optional[Dict[str, Any]] = None
    tools: Tuple[str, ...] = ()  #: the names of the tools offered


def is_reasoning_model(model: str) -> bool:
    """Named like one of OpenAI's reasoning models (o1, o3, o4-mini, gpt-5, ...)."""
    return model.lower().startswith(_REASONING_PREFIXES)


def _check_messages(messages: Any, roles: tuple) -> List[Dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ApiProblem(400, "'messages' is a required property and must be a non-empty array.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in roles:
            raise ApiProblem(400, f"messages.{i}.role: Input should be one of {', '.join(roles)}.")
        if message.get("content") is None and message.get("role") == "assistant" \
                and message.get("tool_calls"):
            continue  # an assistant message of tool calls only
        if not isinstance(message.get("content"), (str, list)):
            raise ApiProblem(400, f"messages.{i}.content: Input should be a string or an array.")
    return messages


def _check_token_limit(body: Mapping[str, Any], name: str, required: bool = False) -> Optional[int]:
    value = body.get(name)
    if value is None and required:
        raise ApiProblem(400, f"{name}: Field required")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ApiProblem(400, f"{name}: Input should be an integer of at least 1.")
    return value  # type: ignore[no-any-return]


def _stops(value: Any, name: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiProblem(400, f"{name}: Input should be a string or an array of strings.")
    return tuple(stops)


def parse_openai(body: Any) -> ChatRequest:
    """Check a chat-completions request. Raises ApiProblem(400) like the real API."""
    if not isinstance(body, dict):
        raise ApiProblem(400, "We could not parse the JSON body of your request.")
    model = _check_model(body)
    messages = _check_messages(body.get("messages"), ("system", "developer", "user", "assistant", "tool"))
    if is_reasoning_model(model):
        if "max_tokens" in body:
            raise ApiProblem(400, MAX_TOKENS_UNSUPPORTED, "unsupported_parameter", param="max_tokens")
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            raise ApiProblem(400, TEMPERATURE_UNSUPPORTED.format(value=temperature), "unsupported_value",
                             param="temperature")
    limit = _check_token_limit(body, "max_completion_tokens")
    if limit is None:
        limit = _check_token_limit(body, "max_tokens")
    options = body.get("stream_options") or {}
    tools = check_openai_tools(body, messages, lambda text: ApiProblem(400, text))
    return ChatRequest(model, messages, body.get("stream") is True,
                       isinstance(options, dict) and options.get("include_usage") is True,
                       limit, _stops(body.get("stop"), "stop"), _openai_schema(body.get("response_format")),
                       tools)


def _openai_schema(response_format: Any) -> Optional[Dict[str, Any]]:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    spec = response_format.get("json_schema") if kind == "json_schema" else None
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("schema"), dict)):
        raise ApiProblem(400, "Invalid 'response_format': expected {'type': 'text' | 'json_object'} or "
                         "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}.",
                         param="response_format")
    return spec["schema"]  # type: ignore[no-any-return]


def parse_anthropic(body: Any) -> ChatRequest:
    """Check a Messages API request (``system`` is top level; ``max_tokens`` required).
    Raises ApiProblem(400) like the real API."""
    if not isinstance(body, dict):
        raise ApiProblem(400, "There was an issue with the JSON body of your request.")
    model = _check_model(body)
    messages = _check_messages(body.get("messages"), ("user", "assistant"))
    tools = check_anthropic_tools(body, messages, lambda text: ApiProblem(400, text))
    max_tokens = _check_token_limit(body, "max_tokens", required=True)
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise ApiProblem(400, "system: Input should be a string or an array of text blocks.")
    if system:
        messages = [{"role": "system", "content": system}] + messages
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024 or (max_tokens is not None and budget >= max_tokens):
            raise ApiProblem(400, "thinking.enabled.budget_tokens: Input should be at least 1024 and less "
                             "than max_tokens.")
    schema = None
    output = body.get("output_config")
    fmt = output.get("format") if isinstance(output, dict) else None
    if fmt is not None:
        if not (isinstance(fmt, dict) and fmt.get("type") == "json_schema"
                and isinstance(fmt.get("schema"), dict)):
            raise ApiProblem(400, "output_config.format: Input should be "
                             "{'type': 'json_schema', 'schema': {...}}.")
        schema = fmt["schema"]
    return ChatRequest(model, messages, body.get("stream") is True, True, max_tokens,
                       _stops(body.get("stop_sequences"), "stop_sequences"), schema, tools)
