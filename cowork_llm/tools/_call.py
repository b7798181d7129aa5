"""Calling a Python function with the arguments a model sent: JSON values turned into
what the hints ask for (a dict into a dataclass, a value into an Enum member, lists and
dicts of those), checked against the signature first."""

import collections.abc
import dataclasses
import enum
import inspect
import types
import typing
from typing import Any, Callable, Dict, Mapping

__all__ = ["call_with_arguments", "ToolArgumentError"]


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the function; the message says how (it goes back
    to the model as the tool's error result)."""


def call_with_arguments(func: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
    """``func(**arguments)``, with each argument converted to its parameter's hint.

    Raises:
        ToolArgumentError: a missing or unknown argument, or a value that cannot be
            converted (an unknown Enum value, a dict that does not make the dataclass, a
            value of the wrong JSON type where the hint asks for a list, an object or a
            scalar).
        Whatever ``func`` raises.
    """
    name = getattr(func, "__name__", "tool")
    signature = inspect.signature(func)
    try:
        bound = signature.bind(**arguments)
    except TypeError as error:
        raise ToolArgumentError(f"{name}: {error}") from None
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # the schema was built, so this only happens for odd callables
        hints = {}
    converted: Dict[str, Any] = {}
    for key, value in bound.arguments.items():
        converted[key] = _convert(value, hints.get(key), f"{name}: argument {key!r}")
    return func(**converted)


def _convert(value: Any, hint: Any, where: str) -> Any:
    if hint is None or value is None:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in args if a is not type(None)]
        return _convert(value, members[0], where) if len(members) == 1 else value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in hint)
            raise ToolArgumentError(f"{where}: {value!r} is not one of {allowed}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ToolArgumentError(f"{where}: expected an object for {hint.__name__}, got {value!r:.60}")
        try:
            field_hints = typing.get_type_hints(hint)
        except Exception:
            field_hints = {}
        known = {f.name for f in dataclasses.fields(hint) if f.init}
        unknown = set(value) - known
        if unknown:
            raise ToolArgumentError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                                    f"for {hint.__name__}")
        try:
            return hint(**{k: _convert(v, field_hints.get(k), f"{where}.{k}") for k, v in value.items()})
        except TypeError as error:
            raise ToolArgumentError(f"{where}: {error}") from None
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, list):
            raise ToolArgumentError(f"{where}: expected a list, got {value!r:.60}")
        return [_convert(item, args[0] if args else None, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ToolArgumentError(f"{where}: expected an object, got {value!r:.60}")
        if len(args) == 2:
            return {k: _convert(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
    if hint in _SCALAR_CHECKS and not _SCALAR_CHECKS[hint](value):
        raise ToolArgumentError(f"{where}: expected {hint.__name__}, got {value!r:.60}")
    if hint is float:
        return float(value)
    return value


_SCALAR_CHECKS: Dict[Any, Callable[[Any], bool]] = {
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
