"""Tool calling in Anthropic's Messages API, translated from and to OpenAI's vocabulary:

- ``tools``: ``{"name", "description", "input_schema"}`` (OpenAI's ``parameters``);
- ``tool_choice``: ``auto`` → ``{"type": "auto"}``, ``required`` → ``{"type": "any"}``,
  ``none`` → ``{"type": "none"}``, a named function → ``{"type": "tool", "name"}``;
  ``parallel_tool_calls=False`` → ``disable_parallel_tool_use: true`` on it;
- an assistant message's ``tool_calls`` → ``tool_use`` blocks after its text;
- ``tool`` messages → ``tool_result`` blocks in a user turn: consecutive results share
  one turn, and a user message right after them joins that turn (after the results, as
  the API requires the results to come first); ``is_error`` is kept.

Answers (``tool_use`` blocks, ``input_json_delta`` stream pieces) are read by
:mod:`._tool_calls`.
"""

import json
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["anthropic_tools", "anthropic_tool_choice", "anthropic_turns"]

_SYSTEM_ROLES = frozenset({"system", "developer"})


def anthropic_tools(tools: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """OpenAI-format tool dicts (already checked) as Anthropic tools."""
    converted = []
    for tool in tools:
        function = tool["function"]
        entry: Dict[str, Any] = {"name": function["name"],
                                 "input_schema": function.get("parameters") or {"type": "object",
                                                                                "properties": {}}}
        if function.get("description"):
            entry["description"] = function["description"]
        converted.append(entry)
    return converted


def anthropic_tool_choice(tool_choice: Any, parallel_tool_calls: Optional[bool]) -> Optional[Dict[str, Any]]:
    """Anthropic's ``tool_choice`` for OpenAI's (checked) ``tool_choice`` and
    ``parallel_tool_calls``; None when neither asks for anything."""
    if tool_choice is None and parallel_tool_calls is not False:
        return None
    if isinstance(tool_choice, dict):
        choice: Dict[str, Any] = {"type": "tool", "name": tool_choice["function"]["name"]}
    else:
        choice = {"type": {"required": "any", "none": "none"}.get(tool_choice or "auto", "auto")}
    if parallel_tool_calls is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return choice


def anthropic_turns(messages: Sequence[Dict[str, Any]],
                    plain: Callable[[int, Dict[str, Any]], Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The ``messages`` of the body, from all the checked messages (system and developer
    ones are skipped: they go to ``system``); ``plain(i, message)`` translates a message
    without tool parts (text and images), ``i`` its index in ``messages``.

    Raises:
        ValueError: an assistant tool call whose arguments are not a JSON object (named
            by its message index).
    """
    turns: List[Dict[str, Any]] = []
    results_turn: Optional[Dict[str, Any]] = None  # the user turn holding the latest tool results
    for i, message in enumerate(messages):
        role = message["role"]
        if role in _SYSTEM_ROLES:
            continue
        if role == "tool":
            block = _tool_result(message)
            if results_turn is None:
                results_turn = {"role": "user", "content": []}
                turns.append(results_turn)
            results_turn["content"].append(block)
            continue
        if role == "user" and results_turn is not None:
            results_turn["content"].extend(_blocks(plain(i, message)["content"]))
            results_turn = None
            continue
        results_turn = None
        if role == "assistant" and message.get("tool_calls"):
            turns.append(_assistant_with_calls(i, message, plain))
        else:
            turns.append(plain(i, message))
    return turns


def _assistant_with_calls(i: int, message: Dict[str, Any],
                          plain: Callable[[int, Dict[str, Any]], Dict[str, Any]]) -> Dict[str, Any]:
    content: List[Dict[str, Any]] = []
    if message.get("content"):
        content.extend(_blocks(plain(i, {k: v for k, v in message.items() if k != "tool_calls"})["content"]))
    for j, call in enumerate(message["tool_calls"]):
        function = call["function"]
        try:
            arguments = json.loads(function["arguments"]) if function["arguments"].strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ValueError(f"messages[{i}]['tool_calls'][{j}]['function']['arguments'] must be a JSON "
                             "object (Anthropic takes tool input as an object)")
        content.append({"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments})
    return {"role": "assistant", "content": content}


def _tool_result(message: Dict[str, Any]) -> Dict[str, Any]:
    content = message["content"]
    block: Dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"],
                             "content": content if isinstance(content, str)
                             else [{"type": "text", "text": part["text"]} for part in content]}
    if message.get("is_error"):
        block["is_error"] = True
    return block


def _blocks(content: Any) -> List[Dict[str, Any]]:
    """Content as a list of blocks (a string becomes one text block)."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
