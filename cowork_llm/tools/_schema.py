"""A plain Python function as a tool: its JSON schema from the signature's type hints,
its description and per-parameter text from the docstring.

Supported hints: ``str``, ``int``, ``float``, ``bool``, ``Optional[X]`` / ``X | None``,
``Literal[...]``, ``list[X]`` (and ``List``, ``Sequence``), ``dict`` / ``dict[str, X]``,
dataclasses (an object of their fields) and ``Enum`` subclasses (their values). Anything
else — a parameter without a hint, ``Any``, ``*args`` — is a ValueError naming the
function and the parameter: a schema that guesses would let the model send what the
function cannot take.

Docstrings: the text before the first section is the description (lines of a paragraph
joined); parameters are read
from a Google-style ``Args:`` section (``name: text`` or ``name (type): text``, continued
on indented lines) or Sphinx ``:param name: text`` lines.
"""

import collections.abc
import dataclasses
import enum
import inspect
import re
import types
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["function_tool", "parameters_schema", "type_schema", "parse_docstring", "TOOL_NAME"]

#: What OpenAI accepts as a function name (Anthropic's rule is the same).
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields?|Examples?|Notes?)"
                      r"\s*:?\s*$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[\w\[\], ]+\s+)?(\w+)\s*:\s*(.*)$")


def function_tool(func: Callable[..., Any]) -> Dict[str, Any]:
    """``{"type": "function", "function": {"name", "description", "parameters"}}`` for
    ``func``, in OpenAI's tool format.

    Raises:
        ValueError: a parameter without a type hint or of an unsupported type, ``*args``
            or ``**kwargs``, hints that cannot be resolved, or a name OpenAI would refuse
            (each message names the function and, where it applies, the parameter).
    """
    name = getattr(func, "__name__", None)
    if not callable(func) or not isinstance(name, str):
        raise ValueError(f"a tool must be a function or a tool dict, got {func!r:.60}")
    if not TOOL_NAME.match(name):
        raise ValueError(f"function {name!r} cannot be a tool: a tool name is 1 to 64 letters, "
                         "digits, '_' or '-'")
    description, parameter_text = parse_docstring(inspect.getdoc(func) or "")
    function: Dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = parameters_schema(func, parameter_text)
    return {"type": "function", "function": function}


def parameters_schema(func: Callable[..., Any],
                      descriptions: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The JSON schema (an object) of ``func``'s parameters. Raises what
    :func:`function_tool` raises."""
    name = getattr(func, "__name__", repr(func))
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as error:
        raise ValueError(f"function {name}: cannot read its signature ({error})") from None
    try:
        hints = typing.get_type_hints(func)
    except Exception as error:  # NameError for a forward reference that does not resolve
        raise ValueError(f"function {name}: its type hints cannot be resolved ({error})") from None
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for parameter in signature.parameters.values():
        where = f"function {name}, parameter {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ValueError(f"{where}: *args and **kwargs cannot be described to a model; "
                             "name each parameter")
        if parameter.name not in hints:
            raise ValueError(f"{where} has no type hint; annotate it (str, int, float, bool, "
                             "Optional, Literal, list, dict, a dataclass or an Enum)")
        schema = type_schema(hints[parameter.name], where)
        text = (descriptions or {}).get(parameter.name)
        if text:
            schema = {**schema, "description": text}
        if parameter.default is parameter.empty:
            required.append(parameter.name)
        elif _is_json_value(parameter.default):
            schema = {**schema, "default": _json_value(parameter.default)}
        properties[parameter.name] = schema
    result: Dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    result["additionalProperties"] = False
    return result


def type_schema(hint: Any, where: str) -> Dict[str, Any]:
    """The JSON schema of one type hint. Raises ValueError naming ``where`` for a type
    it cannot describe."""
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in args if a is not type(None)]
        if len(members) == len(args):
            raise ValueError(f"{where}: a union of several types ({hint}) is not supported; "
                             "use one type, or Optional[X]")
        inner = type_schema(members[0] if len(members) == 1 else typing.Union[tuple(members)], where)
        if isinstance(inner.get("type"), str):
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is typing.Literal:
        kinds = {_SCALARS.get(type(a)) for a in args}
        if None in kinds:
            raise ValueError(f"{where}: Literal values must be str, int, float or bool, got {hint}")
        schema: Dict[str, Any] = {"enum": list(args)}
        if len(kinds) == 1:
            schema = {"type": kinds.pop(), **schema}
        return schema
    if hint in (list, List) or origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        if not args:
            raise ValueError(f"{where}: say what the list holds, e.g. list[str]")
        return {"type": "array", "items": type_schema(args[0], where)}
    if hint in (dict, Dict) or origin is dict:
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise ValueError(f"{where}: dict keys must be str (JSON object keys), got {hint}")
        return {"type": "object", "additionalProperties": type_schema(args[1], where)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        kinds = {_SCALARS.get(type(v)) for v in values}
        if None in kinds:
            raise ValueError(f"{where}: the values of Enum {hint.__name__} must be str, int, float or bool")
        schema = {"enum": values}
        if len(kinds) == 1:
            schema = {"type": kinds.pop(), **schema}
        return schema
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_schema(hint, where)
    raise ValueError(f"{where}: type {getattr(hint, '__name__', hint)} is not supported (use str, int, "
                     "float, bool, Optional, Literal, list, dict, a dataclass or an Enum)")


def _dataclass_schema(cls: type, where: str) -> Dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception as error:
        raise ValueError(f"{where}: the hints of dataclass {cls.__name__} cannot be resolved "
                         f"({error})") from None
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        properties[f.name] = type_schema(hints[f.name], f"{where}, field {cls.__name__}.{f.name}")
        text = f.metadata.get("description") if f.metadata else None
        if isinstance(text, str):
            properties[f.name]["description"] = text
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema: Dict[str, Any] = {"type": "object", "properties": properties, "required": required,
                              "additionalProperties": False}
    doc = inspect.getdoc(cls)
    if doc and not doc.startswith(f"{cls.__name__}("):  # dataclasses invent "Name(a: int, ...)"
        schema["description"] = parse_docstring(doc)[0]
    return schema


def parse_docstring(doc: str) -> Tuple[str, Dict[str, str]]:
    """(description, {parameter: text}) from a Google- or Sphinx-style docstring."""
    description: List[str] = []
    params: Dict[str, str] = {}
    section: Optional[str] = None
    current: Optional[str] = None
    indent = 0
    for line in doc.splitlines():
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx:
            current, section = sphinx.group(1), "sphinx"
            params[current] = sphinx.group(2).strip()
            continue
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1).lower()
            current = None
            continue
        if line.lstrip().startswith(":"):  # :returns:, :raises: ... end the parameter text
            section, current = "other", None
            continue
        if section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters", "params"):
            stripped = line.strip()
            if not stripped:
                continue
            entry = re.match(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", stripped)
            line_indent = len(line) - len(line.lstrip())
            if entry and (current is None or line_indent <= indent):
                current, indent = entry.group(1), line_indent
                params[current] = entry.group(2).strip()
            elif current is not None:
                params[current] = (params[current] + " " + stripped).strip()
        elif section == "sphinx" and current is not None and line.strip():
            params[current] = (params[current] + " " + line.strip()).strip()
    paragraphs = re.split(r"\n\s*\n", "\n".join(description).strip())
    text = "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs if p.strip())
    return text, params


def _is_json_value(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, enum.Enum))


def _json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value
