"""A structured answer read back: ``X | None`` fields of a dataclass format become their
Python values, and an answer that fails the schema is reported with the place of the
first problem (``schema_error``), as a user reading the error needs it (found by mutation
testing, see TESTING.md)."""

import dataclasses
from typing import List, Optional, Tuple, Union

import pytest

from cowork_llm.errors import InvalidResponseError
from cowork_llm.request import check_response_format, parse_answer, schema_of_dataclass


@dataclasses.dataclass
class Address:
    street: str
    number: int


@dataclasses.dataclass
class Shop:
    name: str
    address: "Address | None"
    rating: "float | None"
    previous: Optional[List[Address]]


def test_pipe_optional_fields_become_their_dataclass_and_float():
    shop = parse_answer('{"name": "Deli", "address": {"street": "Main", "number": 3}, "rating": 4,'
                        ' "previous": [{"street": "Old", "number": 1}]}', check_response_format(Shop))
    assert shop == Shop("Deli", Address("Main", 3), 4.0, [Address("Old", 1)])
    assert isinstance(shop.address, Address) and isinstance(shop.rating, float)
    empty = parse_answer('{"name": "Deli", "address": null, "rating": null, "previous": null}',
                         check_response_format(Shop))
    assert empty == Shop("Deli", None, None, None)


def schema_error(text, response_format):
    with pytest.raises(InvalidResponseError) as caught:
        parse_answer(text, check_response_format(response_format))
    return caught.value.schema_error


def test_the_first_problem_is_named_by_its_path_in_the_answer():
    answer = '{"name": "Deli", "address": {"street": "Main", "number": "three"}, "rating": 4, "previous": []}'
    assert schema_error(answer, Shop) == "['address']['number']: 'three' is not of type 'integer'"
    answer = '{"name": "Deli", "address": null, "rating": 4, "previous": [{"street": "Old", "number": 1}, 5]}'
    assert schema_error(answer, Shop).startswith("['previous'][1]: ")


def test_a_problem_with_the_whole_answer_says_so():
    assert schema_error("[1, 2]", {"type": "json_object"}) == "the answer: [1, 2] is not of type 'object'"


def test_an_optional_field_of_a_type_without_a_schema_is_named_with_what_to_use():
    @dataclasses.dataclass
    class Bad:
        when: Optional[complex]

    with pytest.raises(ValueError) as raised:
        schema_of_dataclass(Bad)
    assert str(raised.value) == (
        "response_format dataclass field Bad.when has type <class 'complex'>, which has no JSON schema "
        "here (use str, int, float, bool, Optional, list, Literal, Enum or a dataclass)")


@dataclasses.dataclass
class Census:
    city: str
    population: int
    capital: bool
    share: float
    stops: Tuple[Address, ...]
    mayor: Union[Address, str]


def test_each_field_has_its_own_python_type():
    census = parse_answer('{"city": "Oslo", "population": 700000, "capital": true, "share": 1,'
                          ' "stops": [{"street": "Main", "number": 3}], "mayor": "R. Johansen"}',
                          check_response_format(Census))
    assert [type(value) for value in dataclasses.astuple(census, tuple_factory=list)][:4] == [
        str, int, bool, float]  # an integer answer for a float field becomes a float, no other
    assert census.stops == (Address("Main", 3),) and isinstance(census.stops[0], Address)
    assert census.mayor == "R. Johansen"  # the first member of the union the value fits
    again = parse_answer('{"city": "Oslo", "population": 1, "capital": false, "share": 0.5, "stops": [],'
                         ' "mayor": {"street": "Town Hall", "number": 1}}', check_response_format(Census))
    assert again.mayor == Address("Town Hall", 1)


def test_a_schema_problem_is_told_in_at_most_500_characters():
    count = {"type": "json_schema", "json_schema": {"name": "count", "schema": {
        "type": "object", "properties": {"count": {"type": "integer"}}}}}
    error = schema_error('{"count": "%s"}' % ("many " * 400), count)
    assert len(error) == 500 and error.startswith("['count']: 'many many")


@pytest.mark.parametrize("hint, message", [
    (Tuple[int, str], "response_format dataclass field Bad.value: use Tuple[X, ...], not "
                      "typing.Tuple[int, str]"),
    (List, "response_format dataclass field Bad.value: say the item type (typing.List[X])"),
    (List[complex], "response_format dataclass field Bad.value has type <class 'complex'>, which has "
                    "no JSON schema here (use str, int, float, bool, Optional, list, Literal, Enum or a "
                    "dataclass)"),
])
def test_a_field_type_without_a_schema_is_refused_with_what_to_write(hint, message):
    Bad = dataclasses.make_dataclass("Bad", [("value", hint)])
    with pytest.raises(ValueError) as raised:
        check_response_format(Bad)
    assert str(raised.value) == message


def test_a_dataclass_is_sent_under_a_name_openai_accepts():
    Long = dataclasses.make_dataclass("Städte_" + "x" * 70, [("name", str)])
    name = check_response_format(Long).to_openai()["json_schema"]["name"]
    assert name == "St_dte_" + "x" * 57 and len(name) == 64
