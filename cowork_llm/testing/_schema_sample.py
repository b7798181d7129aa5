"""A deterministic JSON value that matches a JSON schema: what MockLlm and FakeLlmServer
answer to a structured-output request.

One fixed value per type (``"text"``, ``1``, ``1.5``, ``true``, ``null``), honouring
``const``, ``enum`` (the first value), ``minimum``, ``minLength``, ``minItems``,
``anyOf``/``oneOf`` (the first choice), ``allOf`` (merged objects) and local ``$ref``s.
Every listed property is filled in. Good enough for the schemas structured output
allows; an exotic schema may get a value that does not match, which the client then
reports, as it would a real model's.
"""

from typing import Any, Dict, Mapping, Optional

__all__ = ["sample_for_schema"]

_MAX_DEPTH = 20


def sample_for_schema(schema: Mapping[str, Any], root: Optional[Mapping[str, Any]] = None,
                      depth: int = 0) -> Any:
    """A value matching ``schema`` (``root`` resolves ``#/...`` references). Never raises
    for a dict schema; a schema nested deeper than 20 levels gets None there."""
    root = schema if root is None else root
    if depth > _MAX_DEPTH or not isinstance(schema, Mapping):
        return None
    if "$ref" in schema:
        return sample_for_schema(_resolve(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            choices = [c for c in schema[key] if not (isinstance(c, Mapping) and c.get("type") == "null")]
            return sample_for_schema((choices or schema[key])[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: Dict[str, Any] = {}
        for part in schema["allOf"]:
            value = sample_for_schema(part, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {name: sample_for_schema(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, Mapping):
            items = {"type": "string"}
        count = max(1, int(schema.get("minItems") or 0))
        return [sample_for_schema(items, root, depth + 1) for _ in range(count)]
    if kind == "string":
        return "text" + "x" * max(0, int(schema.get("minLength") or 0) - 4)
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        minimum = schema.get("minimum")
        return 1.5 if minimum is None or minimum <= 1.5 else float(minimum)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}  # no type: any value matches; an object is what JSON mode promises


def _resolve(root: Mapping[str, Any], ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}
