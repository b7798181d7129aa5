"""The tool parts of a conversation, checked before anything is sent: an assistant
message's ``tool_calls``, and that every ``tool`` message answers a call made earlier
(an orphan result is refused by both APIs; here it is a ValueError with the index)."""

import collections.abc
import json
from typing import Any, Dict, List

from ._schema import TOOL_NAME

__all__ = ["check_tool_calls", "check_tool_results"]


def check_tool_calls(where: str, raw: Any) -> List[Dict[str, Any]]:
    """An assistant message's ``tool_calls`` as fresh dicts in OpenAI's form (arguments
    given as a dict are encoded as JSON text, as the API carries them).

    Raises:
        ValueError: not a non-empty list of ``{"id", "type": "function", "function":
            {"name", "arguments"}}``, naming the entry and field.
    """
    if isinstance(raw, (str, bytes)) or not isinstance(raw, collections.abc.Sequence) or not raw:
        raise ValueError(f"{where}['tool_calls'] must be a non-empty list of "
                         "{'id': ..., 'type': 'function', 'function': {'name': ..., 'arguments': ...}}")
    calls = []
    for j, call in enumerate(raw):
        at = f"{where}['tool_calls'][{j}]"
        if not isinstance(call, collections.abc.Mapping):
            raise ValueError(f"{at} must be a dict, got {type(call).__name__}")
        call_id, function = call.get("id"), call.get("function")
        if not isinstance(call_id, str) or not call_id.strip():
            raise ValueError(f"{at}['id'] must be a non-empty string (the id the tool result answers)")
        if call.get("type", "function") != "function" or not isinstance(function, collections.abc.Mapping):
            raise ValueError(f"{at} must be {{'type': 'function', 'function': "
                             "{'name': ..., 'arguments': ...}}")
        name, arguments = function.get("name"), function.get("arguments", "{}")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise ValueError(f"{at}['function']['name'] must be a tool name, got {name!r:.60}")
        if isinstance(arguments, collections.abc.Mapping):
            arguments = json.dumps(dict(arguments), ensure_ascii=False)
        if not isinstance(arguments, str):
            raise ValueError(f"{at}['function']['arguments'] must be JSON text or a dict, "
                             f"got {type(arguments).__name__}")
        calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return calls


def check_tool_results(messages: List[Dict[str, Any]]) -> None:
    """Every ``tool`` message answers a call of an earlier assistant message.

    Raises:
        ValueError: an orphan tool result, naming its index and its tool_call_id.
    """
    made: set = set()
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            made.update(call["id"] for call in message.get("tool_calls", ()))
        elif message["role"] == "tool" and message["tool_call_id"] not in made:
            raise ValueError(f"messages[{i}] answers tool call {message['tool_call_id']!r}, which no earlier "
                             "assistant message made (its 'tool_calls' must come first, with that id)")
