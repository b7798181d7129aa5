"""A model's JSON arguments turned into the Python values a tool's hints ask for (an
Optional dataclass, dataclasses inside dicts and lists), errors that point at the
offending element, and the parameter texts read from a reST docstring (found by
mutation testing, see TESTING.md)."""

import dataclasses
import enum
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
