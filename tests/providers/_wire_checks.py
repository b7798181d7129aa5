"""Checks of request bodies against software we did not write.

- OpenAI: ``CreateChatCompletionRequest`` of the official OpenAPI description, from the
  vendored extract (tests/data/openai-openapi, refreshed by its refresh.py), with
  jsonschema.
- Anthropic: the official ``anthropic`` SDK's ``MessageCreateParams`` TypedDicts, with
  pydantic (which the SDK itself depends on). Two things make that check real rather than
  lenient: the TypedDicts sit in a model with ``extra="forbid"`` and ``strict=True``, so
  an unknown key (``temperature``) or a coerced type fails; and ``Iterable[...]`` fields
  are validated lazily by pydantic, so every iterable in the result is read to the end.
  Known gap: a content block's unknown key can pass when another block type of the union
  accepts the rest.
"""

import collections.abc
import copy
import json
import os
from functools import lru_cache
from typing import Any

import jsonschema

OPENAPI = os.path.join(os.path.dirname(__file__), "..", "data", "openai-openapi",
                       "chat-completions-request.json")


@lru_cache(maxsize=1)
def openai_request_validator() -> jsonschema.Draft202012Validator:
    with open(OPENAPI, encoding="utf-8") as f:
        spec = json.load(f)
    schema = {
        "$ref": "#/components/schemas/CreateChatCompletionRequest",
        "components": _openapi_nullable_to_json_schema(copy.deepcopy(spec["components"])),
    }
    return jsonschema.Draft202012Validator(schema)


def _openapi_nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (still used in this 3.1 file) is no JSON Schema
    keyword: jsonschema would ignore it and reject every null. Rewrite it as JSON Schema."""
    if isinstance(node, list):
        return [_openapi_nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _openapi_nullable_to_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False) is not True:
        return node
    if isinstance(node.get("type"), str) and "$ref" not in node:
        node["type"] = [node["type"], "null"]
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        return node
    return {"anyOf": [node, {"type": "null"}]}


@lru_cache(maxsize=2)
def _anthropic_model(stream: bool) -> Any:
    from anthropic.types import message_create_params as params
    from pydantic import BaseModel, ConfigDict

    body_type = params.MessageCreateParamsStreaming if stream else params.MessageCreateParamsNonStreaming

    class Body(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
        body: body_type  # type: ignore[valid-type]

    return Body


def check_anthropic_body(body: Any) -> Any:
    """The body as the SDK's types read it. Raises pydantic.ValidationError when the
    current SDK's MessageCreateParams does not accept it."""
    validated = _anthropic_model(body.get("stream") is True)(body=body).body
    return _read_all(validated)


def _read_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _read_all(item) for key, item in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, collections.abc.Iterable):  # pydantic's lazy ValidatorIterator
        return [_read_all(item) for item in value]
    return value
