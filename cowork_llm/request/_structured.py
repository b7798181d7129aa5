"""Structured output: the ``response_format`` option and the parsing of its answers.

``response_format`` is one of:

- ``{"type": "json_object"}``: any JSON object;
- ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict"?: bool}}``
  (OpenAI's shape): JSON matching the schema;
- a dataclass type: the schema is derived from its fields (str, int, float, bool,
  Optional, list/tuple, Literal, Enum and nested dataclasses; every field required, no
  extra keys, as OpenAI's strict mode wants), named after the class (letters outside
  a-z, A-Z, digits, ``_`` and ``-`` become ``_``, at most 64), and the answer becomes an
  instance;
- ``{"type": "text"}``: plain text (the default).

:func:`parse_answer` turns the answer's text into ``ChatResult.parsed``: the decoded JSON,
checked against the schema with ``jsonschema``, or the dataclass instance. An answer that
is not JSON, or does not match, raises :class:`~cowork_llm.errors.InvalidResponseError`
with ``raw_text`` (the answer) and ``schema_error`` (the first problem) set.
"""

import dataclasses
import enum
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Type

from ..errors import InvalidResponseError
from ..results import ChatResult

__all__ = ["ResponseFormat", "check_response_format", "schema_of_dataclass", "parse_answer", "with_parsed"]

# OpenAI's rule for json_schema.name (CreateChatCompletionRequest, ResponseFormatJsonSchema).
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NOT_IN_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```\s*$", re.DOTALL)


@dataclass(frozen=True)
class ResponseFormat:
    """A checked ``response_format``. ``target`` is the dataclass answers become."""

    type: str  # noqa: A003 - OpenAI's own name for it
    schema: Optional[Dict[str, Any]] = None
    name: str = "response"
    strict: Optional[bool] = None
    description: Optional[str] = None
    target: Optional[Type[Any]] = None

    def to_openai(self) -> Dict[str, Any]:
        """The ``response_format`` object of OpenAI's chat-completions request."""
        if self.type != "json_schema":
            return {"type": self.type}
        spec: Dict[str, Any] = {"name": self.name, "schema": self.schema}
        if self.description is not None:
            spec["description"] = self.description
        if self.strict is not None:
            spec["strict"] = self.strict
        return {"type": "json_schema", "json_schema": spec}

    def cache_material(self) -> Dict[str, Any]:
        """What makes two formats different answers: the wire form and the target type."""
        material = self.to_openai()
        if self.target is not None:
            material["target"] = f"{self.target.__module__}.{self.target.__qualname__}"
        return material


def check_response_format(value: Any) -> Optional[ResponseFormat]:
    """The :class:`ResponseFormat` for a ``response_format`` argument (None for None).

    Raises:
        ValueError: an unknown type, a json_schema without a valid name or schema (the
            schema is checked with jsonschema's metaschema), or a dataclass with a field
            type that has no JSON schema.
    """
    if value is None:
        return None
    if isinstance(value, ResponseFormat):
        return value
    if isinstance(value, type) and dataclasses.is_dataclass(value):
        # Named after the class, in OpenAI's alphabet (a Python name may hold any letter).
        return ResponseFormat("json_schema", schema_of_dataclass(value),
                              name=_NOT_IN_NAME.sub("_", value.__name__)[:64], strict=True, target=value)
    if not isinstance(value, Mapping):
        raise ValueError("response_format must be {'type': 'json_object'}, {'type': 'json_schema', "
                         f"'json_schema': {{...}}}} or a dataclass type, got {type(value).__name__}")
    kind = value.get("type")
    if kind in ("text", "json_object"):
        _only(value, {"type"}, "response_format")
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise ValueError("response_format['type'] must be 'text', 'json_object' or 'json_schema', "
                         f"got {kind!r}")
    _only(value, {"type", "json_schema"}, "response_format")
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise ValueError("response_format['json_schema'] must be a dict with 'name' and 'schema'")
    _only(spec, {"name", "schema", "strict", "description"}, "response_format['json_schema']")
    name, schema, strict = spec.get("name"), spec.get("schema"), spec.get("strict")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError("response_format['json_schema']['name'] must be 1 to 64 letters, digits, "
                         f"'_' or '-', got {name!r}")
    if not isinstance(schema, Mapping):
        raise ValueError("response_format['json_schema']['schema'] must be a JSON schema dict, "
                         f"got {schema!r:.60}")
    if strict is not None and not isinstance(strict, bool):
        raise ValueError(f"response_format['json_schema']['strict'] must be true or false, got {strict!r}")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise ValueError("response_format['json_schema']['description'] must be a string")
    schema = json.loads(json.dumps(schema))  # a plain, private copy (raises for non-JSON values)
    _check_schema(schema)
    return ResponseFormat("json_schema", schema, name=name, strict=strict, description=description)


def _only(mapping: Mapping[str, Any], allowed: set, where: str) -> None:
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))} "
                         f"(allowed: {', '.join(sorted(allowed))})")


def _check_schema(schema: Dict[str, Any]) -> None:
    import jsonschema  # only structured output needs it

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise ValueError(f"response_format['json_schema']['schema'] is not a valid JSON schema: "
                         f"{error.message}") from None


# --- dataclasses ---------------------------------------------------------------------------


def schema_of_dataclass(cls: type) -> Dict[str, Any]:
    """The JSON schema of a dataclass's fields. Raises ValueError for a field type that
    has none (naming the field)."""
    hints = typing.get_type_hints(cls)
    properties = {f.name: _schema_of(hints[f.name], f"{cls.__name__}.{f.name}")
                  for f in dataclasses.fields(cls)}
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _schema_of(hint: Any, where: str) -> Dict[str, Any]:
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return schema_of_dataclass(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple) or origin is typing.get_origin(typing.Sequence[int]):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise ValueError(f"response_format dataclass field {where}: use Tuple[X, ...], not {hint}")
        if not args:
            raise ValueError(f"response_format dataclass field {where}: say the item type ({hint}[X])")
        return {"type": "array", "items": _schema_of(args[0], where)}
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return {"anyOf": [_schema_of(arg, where) if arg is not type(None) else {"type": "null"}
                          for arg in args]}
    raise ValueError(f"response_format dataclass field {where} has type {hint!r}, which has no JSON "
                     "schema here (use str, int, float, bool, Optional, list, Literal, Enum or a dataclass)")


def _build(hint: Any, value: Any) -> Any:
    """``value`` (already valid against the schema of ``hint``) as ``hint``'s type."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(hint)})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is float and isinstance(value, int):
        return float(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return tuple(_build(args[0], item) for item in value)
    if origin is list or origin is typing.get_origin(typing.Sequence[int]):
        return [_build(args[0], item) for item in value]
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        if value is None:
            return None
        import jsonschema

        for arg in args:  # the first member the value fits
            if arg is not type(None) and jsonschema.Draft202012Validator(_schema_of(arg, "")).is_valid(value):
                return _build(arg, value)
    return value


# --- answers ---------------------------------------------------------------------------------


def parse_answer(text: str, response_format: Optional[ResponseFormat], *,
                 request_id: Optional[str] = None) -> Any:
    """``ChatResult.parsed`` for an answer: None without a JSON format, else the JSON
    (a dataclass instance for a dataclass format). A fenced answer (```json ... ```) is
    read inside the fence.

    Raises:
        InvalidResponseError: not JSON, or not matching the schema (``raw_text`` and
            ``schema_error`` set).
    """
    if response_format is None or response_format.type == "text":
        return None
    fenced = _FENCE.match(text.strip())
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError as error:
        raise _invalid(f"the answer is not valid JSON ({error})", text, str(error), request_id) from None
    schema = response_format.schema
    if response_format.type == "json_object":
        schema = {"type": "object"}
    problem = _first_error(schema, value) if schema is not None else None
    if problem is not None:
        raise _invalid(f"the answer does not match the response_format schema: {problem}", text,
                       problem, request_id)
    if response_format.target is not None:
        return _build(response_format.target, value)
    return value


def _first_error(schema: Dict[str, Any], value: Any) -> Optional[str]:
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "".join(f"[{part!r}]" for part in error.absolute_path)
    return f"{where or 'the answer'}: {error.message}"[:500]


def _invalid(message: str, text: str, problem: str, request_id: Optional[str]) -> InvalidResponseError:
    return InvalidResponseError(message, request_id=request_id, raw_text=text, schema_error=problem)


def with_parsed(result: ChatResult, response_format: Optional[ResponseFormat]) -> ChatResult:
    """``result`` with ``parsed`` filled in (unchanged without a JSON format). Raises what
    :func:`parse_answer` raises."""
    if response_format is None or response_format.type == "text":
        return result
    parsed = parse_answer(result.content, response_format, request_id=result.request_id)
    return dataclasses.replace(result, parsed=parsed)
