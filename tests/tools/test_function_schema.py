"""A plain Python function as a tool: the JSON schema from its hints and docstring, a
ValueError naming function and parameter for what cannot be described, and calling it
with a model's JSON arguments. Every schema is checked to be a valid JSON Schema, and the
whole tool against the official spec's ChatCompletionTool where the vendored extract has it."""

import dataclasses
import enum
import functools
import json
import os
from typing import Any, Dict, List, Literal, Optional, Union

import jsonschema
import pytest

from cowork_llm.tools import (
    ToolArgumentError,
    ToolCall,
    call_with_arguments,
    function_tool,
    parameters_schema,
)

SPEC = os.path.join(os.path.dirname(__file__), "..", "data", "openai-openapi",
                    "chat-completions-request.json")


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@dataclasses.dataclass
class Place:
    """Where to look."""

    city: str
    country: Optional[str] = None


def get_weather(place: Place, unit: Unit = Unit.CELSIUS, days: int = 1,
                detail: Literal["short", "long"] = "short", hourly: bool = False) -> Dict[str, Any]:
    """Get the weather forecast for a place.

    Uses the nearest station.

    Args:
        place: the city (and country) to look up
        unit: the temperature unit
        days: how many days ahead,
            from 1 to 7
        detail: how much to say
        hourly (bool): one value per hour
    """
    return {"city": place.city, "unit": unit.value, "days": days, "detail": detail, "hourly": hourly}


def save_doc(title: str, sections: List[str], tags: Optional[Dict[str, str]] = None,
             score: float = 0.5) -> str:
    """Save a document.

    :param title: the document's title
    :param sections: its sections, in order
    :param tags: labels to attach
    """
    return title


def spec_validator(name):
    with open(SPEC, encoding="utf-8") as f:
        spec = json.load(f)
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **spec})


def test_hints_and_a_google_docstring_make_the_schema():
    tool = function_tool(get_weather)
    function = tool["function"]
    assert tool["type"] == "function" and function["name"] == "get_weather"
    assert function["description"] == "Get the weather forecast for a place.\n\nUses the nearest station."
    params = function["parameters"]
    assert params["required"] == ["place"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["place"]["type"] == "object"
    assert props["place"]["required"] == ["city"]
    assert props["place"]["properties"]["country"] == {"type": ["string", "null"]}
    assert props["place"]["description"] == "the city (and country) to look up"
    assert props["unit"] == {"type": "string", "enum": ["celsius", "fahrenheit"],
                             "description": "the temperature unit", "default": "celsius"}
    assert props["days"] == {"type": "integer", "description": "how many days ahead, from 1 to 7",
                             "default": 1}
    assert props["detail"]["enum"] == ["short", "long"] and props["detail"]["type"] == "string"
    assert props["hourly"]["type"] == "boolean" and props["hourly"]["description"] == "one value per hour"
    jsonschema.Draft202012Validator.check_schema(params)


def test_sphinx_docstring_lists_dicts_and_optional():
    function = function_tool(save_doc)["function"]
    assert function["description"] == "Save a document."
    props = function["parameters"]["properties"]
    assert props["title"] == {"type": "string", "description": "the document's title"}
    assert props["sections"] == {"type": "array", "items": {"type": "string"},
                                 "description": "its sections, in order"}
    assert props["tags"]["type"] == ["object", "null"]
    assert props["tags"]["additionalProperties"] == {"type": "string"}
    assert props["score"] == {"type": "number", "default": 0.5}
    assert function["parameters"]["required"] == ["title", "sections"]


@pytest.mark.parametrize("func", [get_weather, save_doc])
def test_the_tool_validates_against_the_official_spec(func):
    validator = spec_validator("ChatCompletionTool") if "ChatCompletionTool" in open(SPEC).read() else None
    if validator is None:
        pytest.skip("the vendored spec extract has no ChatCompletionTool yet")
    validator.validate(function_tool(func))


def test_arguments_that_match_the_schema_validate_and_call_the_function():
    arguments = {"place": {"city": "Oslo"}, "unit": "fahrenheit", "days": 3}
    jsonschema.validate(arguments, function_tool(get_weather)["function"]["parameters"])
    assert call_with_arguments(get_weather, arguments) == {
        "city": "Oslo", "unit": "fahrenheit", "days": 3, "detail": "short", "hourly": False}


def test_a_function_without_a_docstring_or_parameters():
    def ping() -> str:
        return "pong"

    assert function_tool(ping) == {"type": "function", "function": {
        "name": "ping", "parameters": {"type": "object", "properties": {}, "required": [],
                                       "additionalProperties": False}}}


def no_hint(city, days: int) -> str:  # noqa: ANN001 - the point of the test
    return city


def star_args(*cities: str) -> str:
    return ""


def odd_type(when: complex) -> str:
    return ""


def any_type(payload: Any) -> str:
    return ""


def bare_list(items: list) -> str:
    return ""


def int_keys(table: Dict[int, str]) -> str:
    return ""


def two_types(value: "int | str") -> str:
    return ""


@pytest.mark.parametrize("func, words", [
    (no_hint, "function no_hint, parameter 'city' has no type hint"),
    (star_args, "function star_args, parameter 'cities': \\*args and \\*\\*kwargs"),
    (odd_type, "function odd_type, parameter 'when': type complex is not supported"),
    (any_type, "function any_type, parameter 'payload': type .*Any.* is not supported"),
    (bare_list, "function bare_list, parameter 'items': say what the list holds"),
    (int_keys, "function int_keys, parameter 'table': dict keys must be str"),
    (two_types, "function two_types, parameter 'value': a union of several types"),
    (lambda x: x, "cannot be a tool"),
])
def test_what_cannot_be_described_is_a_value_error_naming_function_and_parameter(func, words):
    with pytest.raises(ValueError, match=words):
        function_tool(func)


def test_an_unresolvable_forward_reference_is_named():
    def later(x: "NoSuchType") -> str:  # noqa: F821 - the point of the test
        return ""

    with pytest.raises(ValueError, match="function later: its type hints cannot be resolved"):
        function_tool(later)


@pytest.mark.parametrize("arguments, words", [
    ({}, "missing a required argument: 'place'"),
    ({"place": {"city": "Oslo"}, "colour": 1}, "unexpected keyword argument 'colour'"),
    ({"place": {"city": "Oslo"}, "unit": "kelvin"}, "'kelvin' is not one of 'celsius', 'fahrenheit'"),
    ({"place": {"town": "Oslo"}}, "unknown field\\(s\\) town for Place"),
    ({"place": "Oslo"}, "expected an object for Place"),
    ({"place": {"city": "Oslo"}, "days": "3"}, "argument 'days': expected int, got '3'"),
])
def test_arguments_that_do_not_fit_are_tool_argument_errors(arguments, words):
    with pytest.raises(ToolArgumentError, match=words):
        call_with_arguments(get_weather, arguments)


def test_a_tool_call_becomes_an_assistant_message_entry():
    call = ToolCall(id="call_1", name="save_doc", arguments={"title": "x"}, raw_arguments='{"title": "x"}')
    assert call.to_message() == {"id": "call_1", "type": "function",
                                 "function": {"name": "save_doc", "arguments": '{"title": "x"}'}}
    assert json.loads(ToolCall("c", "f", {"a": 1}).to_message()["function"]["arguments"]) == {"a": 1}


def test_a_dataclass_parameter_refuses_keys_it_does_not_have():
    props = function_tool(get_weather)["function"]["parameters"]["properties"]
    assert props["place"]["additionalProperties"] is False
    assert not jsonschema.Draft202012Validator(props["place"]).is_valid({"city": "Oslo", "zip": "0150"})


def test_defaults_that_are_json_values_are_shown_and_others_left_out():
    def search(query: str, limit: Optional[int] = None, fields: List[str] = ("title",)) -> str:  # noqa: B006
        return query

    props = function_tool(search)["function"]["parameters"]["properties"]
    assert props["limit"] == {"type": ["integer", "null"], "default": None}
    assert props["fields"] == {"type": "array", "items": {"type": "string"}}  # a tuple is no JSON value


def test_a_plain_dict_parameter_is_any_object():
    def tag(labels: dict) -> str:
        return ""

    assert function_tool(tag)["function"]["parameters"]["properties"]["labels"] == {"type": "object"}


def test_an_optional_literal_of_mixed_kinds_also_takes_null():
    def pick(choice: Optional[Literal["all", 1]]) -> str:
        return ""

    schema = function_tool(pick)["function"]["parameters"]["properties"]["choice"]
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(None) and validator.is_valid("all") and validator.is_valid(1)
    assert not validator.is_valid("some") and not validator.is_valid(2)


class Pair(enum.Enum):
    LOW = (0, 1)


def complex_values(table: Dict[str, complex]) -> str:
    return ""


def pair_enum(pair: Pair) -> str:
    return ""


def bad_name_tool() -> str:
    return ""


bad_name_tool.__name__ = "bad name"


def mistaken_hint(unit: Unit.CELSIUS = Unit.CELSIUS) -> str:
    return ""


def optional_union(value: Optional[Union[int, str]]) -> str:
    return ""


def bytes_literal(raw: Literal[b"x"]) -> str:
    return ""


def complex_items(values: List[complex]) -> str:
    return ""


@pytest.mark.parametrize("func, message", [
    (star_args, "function star_args, parameter 'cities': *args and **kwargs cannot be described to a model; "
                "name each parameter"),
    (no_hint, "function no_hint, parameter 'city' has no type hint; annotate it (str, int, float, bool, "
              "Optional, Literal, list, dict, a dataclass or an Enum)"),
    (bytes_literal, "function bytes_literal, parameter 'raw': Literal values must be str, int, float or "
                    "bool, got typing.Literal[b'x']"),
    (complex_items, "function complex_items, parameter 'values': type complex is not supported (use str, "
                    "int, float, bool, Optional, Literal, list, dict, a dataclass or an Enum)"),
    (optional_union, "function optional_union, parameter 'value': a union of several types "
                     "(typing.Union[int, str]) is not supported; use one type, or Optional[X]"),
    (mistaken_hint, "function mistaken_hint, parameter 'unit': type Unit.CELSIUS is not supported (use str, "
                    "int, float, bool, Optional, Literal, list, dict, a dataclass or an Enum)"),
    (complex_values, "function complex_values, parameter 'table': type complex is not supported (use str, "
                     "int, float, bool, Optional, Literal, list, dict, a dataclass or an Enum)"),
    (pair_enum, "function pair_enum, parameter 'pair': the values of Enum Pair must be str, int, float "
                "or bool"),
    (bad_name_tool, "function 'bad name' cannot be a tool: a tool name is 1 to 64 letters, digits, "
                    "'_' or '-'"),
])
def test_the_whole_refusal_reads(func, message):
    with pytest.raises(ValueError) as raised:
        function_tool(func)
    assert str(raised.value) == message


def test_a_params_section_is_read_like_args():
    def convert(amount: float, currency: str) -> str:
        """Convert money.

        Params:
            amount: how much
            currency: ISO code, e.g. EUR
        """
        return ""

    props = function_tool(convert)["function"]["parameters"]["properties"]
    assert props["amount"]["description"] == "how much"
    assert props["currency"]["description"] == "ISO code, e.g. EUR"


def test_a_callable_without_a_name_is_a_value_error_not_a_crash():
    bound = functools.partial(save_doc, "title")
    with pytest.raises(ValueError, match="a tool must be a function or a tool dict, got functools.partial"):
        function_tool(bound)
    with pytest.raises(ValueError, match=r"function functools.partial\(.*\): its type hints cannot be"):
        parameters_schema(bound)


@dataclasses.dataclass
class Parcel:
    """A parcel to send.

    Args:
        weight: in kilograms
    """

    weight: float
    tracking: str = dataclasses.field(default="", init=False)  # set by the carrier, not the model
    fragile: bool = False


@dataclasses.dataclass
class Label:
    text: str


def ship(parcel: Parcel, label: Label) -> str:
    return ""


def test_a_dataclass_parameter_is_described_by_its_docstring_and_init_fields():
    props = function_tool(ship)["function"]["parameters"]["properties"]
    assert props["parcel"]["description"] == "A parcel to send."
    assert list(props["parcel"]["properties"]) == ["weight", "fragile"]  # no init=False field
    assert "description" not in props["label"]  # not the "Label(text: str)" dataclasses invent


@dataclasses.dataclass
class Slot:
    when: complex


@dataclasses.dataclass
class Later:
    when: "NoSuchType"  # noqa: F821 - the point of the test


def book(slot: Slot) -> str:
    return ""


def book_later(slot: Later) -> str:
    return ""


@pytest.mark.parametrize("func, message", [
    (book, "function book, parameter 'slot', field Slot.when: type complex is not supported"),
    (book_later, "function book_later, parameter 'slot': the hints of dataclass Later cannot be resolved"),
])
def test_a_dataclass_field_that_cannot_be_described_is_named(func, message):
    with pytest.raises(ValueError) as raised:
        function_tool(func)
    assert str(raised.value).startswith(message)


class Unreadable:
    """A callable whose signature cannot be read."""

    __name__ = "odd"
    __signature__ = "not a signature"

    def __call__(self, city: str) -> str:
        return city


def test_a_signature_that_cannot_be_read_is_named():
    with pytest.raises(ValueError) as raised:
        function_tool(Unreadable())
    assert str(raised.value).startswith("function odd: cannot read its signature (")
