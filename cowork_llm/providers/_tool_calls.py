"""Tool calls in answers, for both wire formats: decoded from a whole answer or
assembled from a stream's pieces, as :class:`~cowork_llm.results.ToolCall`.

Arguments that are not a JSON object are the provider's fault, not the caller's: an
:class:`~cowork_llm.errors.InvalidResponseError` carrying the raw text, never a silent
empty dict.
"""

import json
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import InvalidResponseError
from ..results import ToolCall

__all__ = ["openai_tool_calls", "anthropic_tool_calls", "decode_arguments", "ToolCallAssembler"]

Invalid = Callable[[str], InvalidResponseError]
_SHOWN_CHARS = 500


def decode_arguments(name: str, raw: str, invalid: Invalid) -> Dict[str, Any]:
    """The JSON object in ``raw`` (an empty string is no arguments: ``{}``).

    Raises:
        InvalidResponseError: ``raw`` is not JSON, or not an object; the message shows it.
    """
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid(f"the arguments of tool call {name!r} are not valid JSON: "
                      f"{raw[:_SHOWN_CHARS]!r}") from None
    if not isinstance(value, dict):
        raise invalid(f"the arguments of tool call {name!r} are not a JSON object: {raw[:_SHOWN_CHARS]!r}")
    return value


def openai_tool_calls(raw: Any, invalid: Invalid) -> Tuple[ToolCall, ...]:
    """The ``message.tool_calls`` of a chat completion (absent or null: none).

    Raises:
        InvalidResponseError: not a list of ``{"id", "function": {"name", "arguments"}}``,
            or arguments that are not a JSON object.
    """
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid("message.tool_calls is not a list")
    calls = []
    for i, entry in enumerate(raw):
        function = entry.get("function") if isinstance(entry, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", "") if isinstance(function, dict) else None
        call_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or not isinstance(arguments, (str, dict)):
            raise invalid(f"message.tool_calls[{i}] has no function name or arguments")
        if isinstance(arguments, dict):  # some compatible servers send the object itself
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=call_id if isinstance(call_id, str) and call_id else f"call_{i}",
                              name=name, arguments=decode_arguments(name, arguments, invalid),
                              raw_arguments=arguments))
    return tuple(calls)


def anthropic_tool_calls(content: List[Any], invalid: Invalid) -> Tuple[ToolCall, ...]:
    """The ``tool_use`` blocks of a Messages API answer.

    Raises:
        InvalidResponseError: a tool_use block without id or name, or whose ``input`` is
            not an object.
    """
    calls = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            continue
        call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
        if not isinstance(call_id, str) or not isinstance(name, str) or not name:
            raise invalid("a tool_use block has no id or name")
        if not isinstance(arguments, dict):
            raise invalid(f"the input of tool_use {name!r} is not a JSON object: "
                          f"{str(arguments)[:_SHOWN_CHARS]!r}")
        calls.append(ToolCall(call_id, name, arguments, json.dumps(arguments, ensure_ascii=False)))
    return tuple(calls)


class ToolCallAssembler:
    """Collects a stream's tool-call pieces by their index (OpenAI's
    ``delta.tool_calls[i]``, Anthropic's content block index) and decodes them at the end.
    Used by one stream reader at a time: not shared between threads."""

    def __init__(self) -> None:
        self._calls: Dict[int, Dict[str, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, index: int, *, call_id: Optional[str] = None, name: Optional[str] = None,
            arguments: Optional[str] = None) -> None:
        """One piece: the id and name arrive once (the first non-empty one is kept),
        the arguments text in pieces that are joined."""
        entry = self._calls.setdefault(index, {"id": None, "name": None, "arguments": []})
        if call_id and not entry["id"]:
            entry["id"] = call_id
        if name and not entry["name"]:
            entry["name"] = name
        if arguments:
            entry["arguments"].append(arguments)

    def add_openai_deltas(self, deltas: Any) -> None:
        """A chunk's ``delta.tool_calls`` list (ignored when it is not a list)."""
        if not isinstance(deltas, list):
            return
        for position, delta in enumerate(deltas):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", position)
            raw_function = delta.get("function")
            function: Dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
            arguments = function.get("arguments")
            if isinstance(arguments, dict):
                arguments = json.dumps(arguments, ensure_ascii=False)
            self.add(index if isinstance(index, int) else position,
                     call_id=delta.get("id") if isinstance(delta.get("id"), str) else None,
                     name=function.get("name") if isinstance(function.get("name"), str) else None,
                     arguments=arguments if isinstance(arguments, str) else None)

    def calls(self, invalid: Invalid) -> Tuple[ToolCall, ...]:
        """The assembled calls in index order.

        Raises:
            InvalidResponseError: a call without a name, or arguments that are not a
                JSON object once joined.
        """
        calls = []
        for index in sorted(self._calls):
            entry = self._calls[index]
            if not entry["name"]:
                raise invalid(f"streamed tool call {index} has no function name")
            raw = "".join(entry["arguments"])
            calls.append(ToolCall(id=entry["id"] or f"call_{index}", name=entry["name"],
                                  arguments=decode_arguments(entry["name"], raw, invalid), raw_arguments=raw))
        return tuple(calls)
