"""The ``tools``, ``tool_choice`` and ``parallel_tool_calls`` arguments of ``chat()``,
checked and put in one form (OpenAI's) before anything is sent."""

import collections.abc
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._schema import TOOL_NAME, function_tool

__all__ = ["normalize_tools", "check_tool_choice", "check_parallel_tool_calls", "TOOL_CHOICES"]

TOOL_CHOICES = ("auto", "none", "required")


def normalize_tools(tools: Any) -> Tuple[Tuple[Dict[str, Any], ...], Dict[str, Callable[..., Any]]]:
    """(the tools as OpenAI tool dicts, the Python functions among them by name).

    Each item is ``{"type": "function", "function": {"name", "description"?,
    "parameters"?}}`` or a plain function (see :func:`~._schema.function_tool`).

    Raises:
        ValueError: not a list, an item of another shape (named by its index), a name
            OpenAI would refuse, or two tools with the same name.
    """
    if isinstance(tools, (str, bytes, collections.abc.Mapping)) or not isinstance(
            tools, collections.abc.Iterable):
        raise ValueError("tools must be a list of functions or {'type': 'function', 'function': {...}} dicts")
    normalized: List[Dict[str, Any]] = []
    functions: Dict[str, Callable[..., Any]] = {}
    for i, tool in enumerate(tools):
        if isinstance(tool, collections.abc.Mapping):
            spec = _check_tool_dict(tool, i)
        elif callable(tool):
            spec = function_tool(tool)
            functions[spec["function"]["name"]] = tool
        else:
            raise ValueError(f"tools[{i}] must be a function or a tool dict, got {type(tool).__name__}")
        name = spec["function"]["name"]
        if any(t["function"]["name"] == name for t in normalized):
            raise ValueError(f"tools[{i}]: a second tool named {name!r}; tool names must be unique")
        normalized.append(spec)
    if not normalized:
        raise ValueError("tools must not be empty (leave it out, or None, for no tools)")
    return tuple(normalized), functions


def _check_tool_dict(tool: Mapping[str, Any], i: int) -> Dict[str, Any]:
    if tool.get("type") != "function" or not isinstance(tool.get("function"), collections.abc.Mapping):
        raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., "
                         "'parameters': {...}}} (or a Python function)")
    function = dict(tool["function"])
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise ValueError(f"tools[{i}]['function']['name'] must be 1 to 64 letters, digits, '_' or '-', "
                         f"got {name!r}")
    if "description" in function and not isinstance(function["description"], str):
        raise ValueError(f"tools[{i}]['function']['description'] must be a string")
    parameters = function.get("parameters")
    if parameters is not None and (not isinstance(parameters, collections.abc.Mapping)
                                   or parameters.get("type", "object") != "object"):
        raise ValueError(f"tools[{i}]['function']['parameters'] must be a JSON schema of type 'object'")
    if parameters is not None:
        function["parameters"] = dict(parameters)
    unknown = set(function) - {"name", "description", "parameters", "strict"}
    if unknown:
        raise ValueError(f"tools[{i}]['function'] has unknown key(s) {', '.join(sorted(unknown))}")
    return {"type": "function", "function": function}


def check_tool_choice(tool_choice: Any, tool_names: Optional[List[str]]) -> Any:
    """``tool_choice`` as given, checked against the tools sent.

    Raises:
        ValueError: not one of ``auto``/``none``/``required`` or ``{"type": "function",
            "function": {"name": ...}}``; a name that is not among the tools; any
            tool_choice without tools.
    """
    if tool_choice is None:
        return None
    if tool_names is None:
        raise ValueError("tool_choice was given without tools")
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise ValueError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or "
                             f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}")
        return tool_choice
    name = None
    if isinstance(tool_choice, collections.abc.Mapping) and tool_choice.get("type") == "function":
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, collections.abc.Mapping) else None
    if not isinstance(name, str):
        raise ValueError("tool_choice must be 'auto', 'none', 'required' or "
                         f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r:.80}")
    if name not in tool_names:
        raise ValueError(f"tool_choice names {name!r}, which is not among the tools "
                         f"({', '.join(tool_names)})")
    return {"type": "function", "function": {"name": name}}


def check_parallel_tool_calls(value: Any, has_tools: bool) -> Optional[bool]:
    """Raises ValueError unless ``value`` is None or a bool (and tools are given)."""
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"parallel_tool_calls must be True, False or None, got {value!r}")
    if not has_tools:
        raise ValueError("parallel_tool_calls was given without tools")
    return value
