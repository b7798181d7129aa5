"""A chat request translated into Anthropic's Messages API body (``POST /messages``).

What the official ``anthropic`` SDK's ``MessageCreateParams`` accepts decides what is sent
(checked by tests against the SDK's types):

- system and developer messages are joined (blank line between) into the top-level
  ``system``; the rest go to ``messages``; a ``name`` has no place and is a ValueError;
- text parts become ``text`` blocks, ``image_url`` parts ``image`` blocks with a
  ``base64`` source (a ``data:`` URL) or a ``url`` source (``detail`` has no equivalent
  and is left out);
- ``max_tokens`` is required: :data:`DEFAULT_MAX_TOKENS` when neither call nor config sets it;
- ``stop`` becomes ``stop_sequences``;
- ``response_format`` json_schema (or a dataclass) becomes ``output_config.format``
  (structured outputs, generally available); ``json_object`` has no Anthropic
  equivalent (a schema is required) and is a ValueError;
- ``reasoning_effort`` becomes ``thinking`` with the budget of :data:`THINKING_BUDGETS`
  (``"none"`` disables thinking); thinking tokens count toward ``max_tokens``, so a
  ``max_tokens`` that leaves less than :data:`DEFAULT_MAX_TOKENS` after the budget is
  raised to budget + DEFAULT_MAX_TOKENS;
- tools, ``tool_choice``, ``parallel_tool_calls``, assistant ``tool_calls`` and ``tool``
  messages are translated by :mod:`._anthropic_tools`;
- ``temperature``, ``top_p`` and ``seed`` are not in the current API: a ValueError
  (``extra_body`` can still send them to a server that takes them).
"""

from typing import Any, Dict, List, Optional

from ..request._messages import decode_data_url, message_text
from ..request._options import ChatOptions
from ._anthropic_tools import anthropic_tool_choice, anthropic_tools, anthropic_turns

__all__ = ["anthropic_body", "unsupported_option", "DEFAULT_MAX_TOKENS", "THINKING_BUDGETS"]

#: Sent as ``max_tokens`` when neither the call nor ``llm.model.max_tokens`` sets it
#: (the API requires the field). Set ``max_tokens`` for longer answers.
DEFAULT_MAX_TOKENS = 1024
#: ``thinking.budget_tokens`` per ``reasoning_effort`` (the API's minimum is 1024).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384,
                    "xhigh": 32768, "max": 65536}
_SYSTEM_ROLES = frozenset({"system", "developer"})
# Options the current Messages API has no field for (anthropic SDK MessageCreateParams).
_NOT_IN_API = {
    "temperature": "the current Anthropic Messages API has no temperature",
    "top_p": "the current Anthropic Messages API has no top_p",
    "seed": "Anthropic has no seed: its answers cannot be made repeatable this way",
}


def unsupported_option(options: Any) -> Optional[str]:
    """The first of temperature/top_p/seed that ``options`` (a ChatOptions or a
    ModelConfig) sets, with why it cannot be sent; None when none is set."""
    for name, why in _NOT_IN_API.items():
        if getattr(options, name, None) is not None:
            return f"{name}: {why}"
    return None


def anthropic_body(model_name: str, messages: List[Dict[str, Any]], options: ChatOptions, *,
                   stream: bool = False) -> Dict[str, Any]:
    """The JSON body. ``options`` already carry the configured defaults.

    Raises:
        ValueError: an option or message Anthropic has no place for (see the module
            docstring), or only system messages.
    """
    problem = unsupported_option(options)
    if problem is not None:
        name = problem.split(":")[0]
        raise ValueError(f"{problem}; leave {name} unset for provider 'anthropic' (extra_body="
                         f"{{'{name}': ...}} sends it anyway, to a server that takes it)")
    system = [message_text(m) for m in messages if m["role"] in _SYSTEM_ROLES]
    conversation = anthropic_turns(messages, _message)
    if not conversation:
        raise ValueError("messages must hold at least one user or assistant message "
                         "(Anthropic takes system prompts separately)")
    max_tokens = options.max_tokens if options.max_tokens is not None else DEFAULT_MAX_TOKENS
    body: Dict[str, Any] = {"model": model_name, "messages": conversation, "max_tokens": max_tokens}
    if system:
        body["system"] = "\n\n".join(system)
    if options.stop is not None:
        body["stop_sequences"] = list(options.stop)
    if options.tools is not None:
        body["tools"] = anthropic_tools(options.tools)
    tool_choice = anthropic_tool_choice(options.tool_choice, options.parallel_tool_calls)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    fmt = options.response_format
    if fmt is not None and fmt.type == "json_object":
        raise ValueError("response_format {'type': 'json_object'} has no Anthropic equivalent (its "
                         "structured output needs a schema): pass {'type': 'json_schema', ...} or a "
                         "dataclass type")
    if fmt is not None and fmt.type == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": fmt.schema}}
    effort = options.reasoning_effort
    if effort == "none":
        body["thinking"] = {"type": "disabled"}
    elif effort is not None:
        budget = THINKING_BUDGETS[effort]
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body["max_tokens"] = max(max_tokens, budget + DEFAULT_MAX_TOKENS)
    if stream:
        body["stream"] = True
    if options.extra_body:
        body.update(options.extra_body)
    return body


def _message(i: int, message: Dict[str, Any]) -> Dict[str, Any]:
    role = message["role"]
    if "name" in message:
        raise ValueError(f"messages[{i}]['name']: Anthropic messages have no name; leave it out "
                         "(or say who speaks in the content)")
    content = message["content"]
    if isinstance(content, list):
        content = [_block(part) for part in content]
    return {"role": role, "content": content}


def _block(part: Dict[str, Any]) -> Dict[str, Any]:
    if part["type"] == "text":
        return {"type": "text", "text": part["text"]}
    url = part["image_url"]["url"]
    if url.startswith("data:"):
        media_type, data = decode_data_url(url)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}
