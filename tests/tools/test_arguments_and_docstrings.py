"""A model's JSON arguments turned into the Python values a tool's hints ask for (an
Optional dataclass, dataclasses inside dicts and lists), errors that point at the
offending element, and the parameter texts read from a reST docstring (found by
mutation testing, see TESTING.md)."""

import dataclasses
import enum
import functools
from typing import Dict, List, Optional

import pytest

from cowork_llm.tools import ToolArgumentError, call_with_arguments, function_tool
from cowork_llm.tools._schema import parse_docstring


@dataclasses.dataclass
class Place:
    city: str
    country: Optional[str] = None


def plan(home: Optional[Place], visits: Dict[str, Place], trips: List[Place]):
    return home, visits, trips


def test_nested_dataclasses_are_built_wherever_the_hints_put_them():
    home, visits, trips = call_with_arguments(plan, {
        "home": {"city": "Oslo"},
        "visits": {"a": {"city": "Rome", "country": "IT"}},
        "trips": [{"city": "Bern"}]})
    assert home == Place("Oslo")
    assert visits == {"a": Place("Rome", "IT")} and trips == [Place("Bern")]
    assert call_with_arguments(plan, {"home": None, "visits": {}, "trips": []}) == (None, {}, [])


@pytest.mark.parametrize("arguments, message", [
    ({"home": None, "visits": {}, "trips": [{"city": "B"}, {"town": "x"}]},
     "plan: argument 'trips'[1]: unknown field(s) town for Place"),
    ({"home": None, "visits": {"k": {"town": 1}}, "trips": []},
     "plan: argument 'visits'['k']: unknown field(s) town for Place"),
])
def test_a_bad_element_is_named_by_its_path(arguments, message):
    with pytest.raises(ToolArgumentError) as raised:
        call_with_arguments(plan, arguments)
    assert str(raised.value) == message


def test_param_texts_continue_over_lines_and_stop_at_other_fields():
    doc = """Find a thing.

        :param name: the name of the thing,
            spread over two lines
        :returns: the thing
            and more about it
        :param late: after returns
        """
    assert parse_docstring(doc) == ("Find a thing.", {
        "name": "the name of the thing, spread over two lines", "late": "after returns"})


def test_a_dataclass_fields_description_comes_from_its_metadata():
    @dataclasses.dataclass
    class Box:
        width: int = dataclasses.field(metadata={"description": "in centimetres"})

    def pack(box: Box):
        return box

    schema = function_tool(pack)["function"]["parameters"]["properties"]["box"]
    assert schema["properties"]["width"] == {"type": "integer", "description": "in centimetres"}


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@dataclasses.dataclass
class Reading:
    unit: Unit
    value: float


def record(reading: Reading, unit: Optional[Unit] = None):
    return reading, unit


def test_the_fields_of_a_dataclass_argument_are_converted_by_their_hints():
    reading, unit = call_with_arguments(record, {"reading": {"unit": "celsius", "value": 3},
                                                 "unit": "fahrenheit"})
    assert reading == Reading(Unit.CELSIUS, 3.0) and isinstance(reading.value, float)
    assert unit is Unit.FAHRENHEIT


def test_a_bad_value_of_an_optional_argument_names_the_argument():
    with pytest.raises(ToolArgumentError) as raised:
        call_with_arguments(record, {"reading": {"unit": "celsius", "value": 1}, "unit": "kelvin"})
    assert str(raised.value) == "record: argument 'unit': 'kelvin' is not one of 'celsius', 'fahrenheit'"


def test_an_arguments_section_may_have_blank_lines_between_entries():
    doc = """Book a table.

    Arguments:
        guests: how many people

        time: when, e.g. 19:30

    Returns:
        the booking id
    """
    assert parse_docstring(doc) == ("Book a table.",
                                    {"guests": "how many people", "time": "when, e.g. 19:30"})


def tag(labels: Dict[str, int], names: List[str], extra: dict):
    return labels, names, extra


@pytest.mark.parametrize("arguments, message", [
    ({"labels": "a=1", "names": [], "extra": {}}, "tag: argument 'labels': expected an object, got 'a=1'"),
    ({"labels": {}, "names": "Oslo", "extra": {}}, "tag: argument 'names': expected a list, got 'Oslo'"),
    ({"labels": {}, "names": [], "extra": [1]}, "tag: argument 'extra': expected an object, got [1]"),
    ({"labels": {"a": "1"}, "names": [], "extra": {}}, "tag: argument 'labels'['a']: expected int, got '1'"),
    ({"labels": {}, "names": ["Oslo", 5], "extra": {}}, "tag: argument 'names'[1]: expected str, got 5"),
])
def test_a_value_of_the_wrong_json_type_is_named_before_the_tool_runs(arguments, message):
    with pytest.raises(ToolArgumentError) as raised:
        call_with_arguments(tag, arguments)
    assert str(raised.value) == message


def test_an_int_argument_given_a_list_is_refused():
    with pytest.raises(ToolArgumentError, match=r"^record: argument 'reading': expected an object"):
        call_with_arguments(record, {"reading": [1]})
    with pytest.raises(ToolArgumentError, match=r"^plan: argument 'trips'\[0\]: expected an object"):
        call_with_arguments(plan, {"home": None, "visits": {}, "trips": [[{"city": "Oslo"}]]})


@pytest.mark.parametrize("arguments, message", [
    ({"reading": {"unit": "kelvin", "value": 1}},
     "record: argument 'reading'.unit: 'kelvin' is not one of 'celsius', 'fahrenheit'"),
    ({"reading": {"unit": "celsius"}},
     "record: argument 'reading': Reading.__init__() missing 1 required positional argument: 'value'"),
    ({"reading": {"unit": "celsius", "value": 1, "when": 2, "where": 3}},
     "record: argument 'reading': unknown field(s) when, where for Reading"),
])
def test_a_bad_field_of_a_dataclass_argument_is_named(arguments, message):
    with pytest.raises(ToolArgumentError) as raised:
        call_with_arguments(record, arguments)
    assert str(raised.value) == message


def test_a_callable_without_hints_or_a_name_still_gets_its_arguments():
    def add(a: int, b: int) -> int:
        return a + b

    bound = functools.partial(add, 1)  # no __name__, and typing cannot read its hints
    assert call_with_arguments(bound, {"b": 2}) == 3
    with pytest.raises(ToolArgumentError, match=r"^tool: missing a required argument: 'b'"):
        call_with_arguments(bound, {})


def test_hints_the_schema_cannot_describe_are_passed_as_sent():
    def loose(value: "int | str", items: list, more: List) -> tuple:
        return value, items, more

    assert call_with_arguments(loose, {"value": "seven", "items": [1, "a"], "more": [2, "b"]}) == (
        "seven", [1, "a"], [2, "b"])

    @dataclasses.dataclass
    class Note:
        text: "NoSuchType"  # noqa: F821 - a field typing cannot resolve

    def keep(note: Note) -> Note:
        return note

    assert call_with_arguments(keep, {"note": {"text": "x"}}) == Note("x")


def test_a_parameters_section_free_text_and_a_description_over_several_lines():
    doc = """Book a table at a restaurant
    near the given address.

    Parameters:
        Both are required.
        guests: how many people
        time: when
    """
    assert parse_docstring(doc) == ("Book a table at a restaurant near the given address.",
                                    {"guests": "how many people", "time": "when"})
