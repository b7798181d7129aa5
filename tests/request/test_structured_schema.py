"""Structured output: the JSON schema a dataclass becomes and the request's
response_format, exactly as the provider receives them, and the words of each refusal
(found by mutation testing, see TESTING.md)."""

import dataclasses
import typing

import pytest

from cowork_llm.request import check_response_format, schema_of_dataclass


@dataclasses.dataclass
class Answer:
    name: str
    age: typing.Optional[int]
    mood: typing.Literal["ok", "bad"]
    score: "float | None"
    tags: typing.List[str]


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "mood": {"enum": ["ok", "bad"]},
        "score": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "mood", "score", "tags"],
    "additionalProperties": False,
}


def test_a_dataclass_becomes_a_strict_schema_with_optionals_literals_and_lists():
    assert schema_of_dataclass(Answer) == ANSWER_SCHEMA


def test_a_dataclass_response_format_is_sent_strict_under_its_name():
    assert check_response_format(Answer).to_openai() == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": ANSWER_SCHEMA, "strict": True}}


def test_a_json_schema_response_format_keeps_its_description_and_strictness():
    given = {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}, "strict": True, "description": "d"}}
    assert check_response_format(given).to_openai() == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "description": "d",
                        "strict": True}}


@pytest.mark.parametrize("value, message", [
    ({"type": "json_object", "extra": 1, "more": 2},
     "response_format has unknown key(s) 'extra', 'more' (allowed: type)"),
    ({"type": "yaml"}, "response_format['type'] must be 'text', 'json_object' or 'json_schema', "
                       "got 'yaml'"),
    ({"type": "json_schema", "json_schema": 3},
     "response_format['json_schema'] must be a dict with 'name' and 'schema'"),
    (5, "response_format must be {'type': 'json_object'}, {'type': 'json_schema', "
        "'json_schema': {...}} or a dataclass type, got int"),
    (dict, "response_format must be {'type': 'json_object'}, {'type': 'json_schema', "
           "'json_schema': {...}} or a dataclass type, got type"),
    (Answer("a", 1, "ok", None, []), "response_format must be {'type': 'json_object'}, {'type': "
                                     "'json_schema', 'json_schema': {...}} or a dataclass type, got Answer"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}, "strict": True},
     "response_format has unknown key(s) 'strict' (allowed: json_schema, type)"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strcit": True}},
     "response_format['json_schema'] has unknown key(s) 'strcit' "
     "(allowed: description, name, schema, strict)"),
    ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}},
     "response_format['json_schema']['name'] must be 1 to 64 letters, digits, '_' or '-', got 'a b'"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}},
     "response_format['json_schema']['schema'] must be a JSON schema dict, got 'object'"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": "yes"}},
     "response_format['json_schema']['strict'] must be true or false, got 'yes'"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "description": 5}},
     "response_format['json_schema']['description'] must be a string"),
])
def test_each_refusal_says_what_is_allowed(value, message):
    with pytest.raises(ValueError) as raised:
        check_response_format(value)
    assert str(raised.value) == message
