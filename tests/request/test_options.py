"""ChatOptions: every per-call option checked once, defaults from [llm.model], the cache
material; and structured output (response_format, parsing, dataclass schemas)."""

import dataclasses
import enum
import pickle
from typing import List, Literal, Optional, Tuple

import pytest

from cowork_llm.config import ModelConfig
from cowork_llm.errors import InvalidResponseError
from cowork_llm.request import ChatOptions, check_response_format, parse_answer, schema_of_dataclass

SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"], "additionalProperties": False}}}


def model(**fields):
    return ModelConfig(base_url="https://api.example.com/v1", api_key="sk-test-0123456789abcdef",
                       model_name="m", **fields)


def test_options_are_checked_and_normalised():
    options = ChatOptions.of(temperature=0, top_p=1, stop="END", seed=-3, reasoning_effort="low",
                             extra_body={"logprobs": True}, response_format={"type": "json_object"})
    assert options.stop == ("END",) and options.seed == -3 and options.extra_body == {"logprobs": True}
    assert options.response_format is not None
    assert options.response_format.to_openai() == {"type": "json_object"}
    assert ChatOptions.of() == ChatOptions()


@pytest.mark.parametrize("options, fragment", [
    ({"temperature": 2.5}, "temperature must be a number from 0 to 2"),
    ({"top_p": 1.5}, "top_p must be a number from 0 to 1"),
    ({"top_p": True}, "top_p must be a number"),
    ({"max_tokens": 0}, "max_tokens must be an integer of at least 1"),
    ({"stop": []}, "stop must be a non-empty string or a list"),
    ({"stop": ["a", ""]}, "stop must be a non-empty string or a list"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop takes at most 4"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": 2**64}, "seed must be an integer"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort must be one of none, minimal, low"),
    ({"extra_body": {"messages": []}}, "extra_body cannot set 'messages'"),
    ({"extra_body": {"x": object()}}, "extra_body must hold plain JSON values"),
    ({"extra_body": ["x"]}, "extra_body must be a dict"),
    ({"response_format": {"type": "xml"}}, r"response_format\['type'\] must be"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}},
     "name'] must be 1 to 64 letters"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
     "is not a valid JSON schema"),
    ({"response_format": "json"}, "response_format must be"),
    ({"cache": "no"}, "cache must be True or False"),
])
def test_bad_options_are_value_errors_naming_the_option(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        ChatOptions.of(**options)


def test_an_unknown_option_is_a_type_error_like_a_misspelt_keyword():
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        ChatOptions.of(temprature=0.2)


def test_defaults_come_from_the_model_config_and_the_call_wins():
    config = model(temperature=0.2, top_p=0.9, stop=["END"], seed=5, reasoning_effort="high", max_tokens=50)
    filled = ChatOptions.of(seed=7).with_defaults(config)
    assert (filled.temperature, filled.top_p, filled.stop, filled.seed, filled.reasoning_effort,
            filled.max_tokens) == (0.2, 0.9, ("END",), 7, "high", 50)
    assert ChatOptions().with_defaults(model()) == ChatOptions()  # nothing configured, nothing set


@pytest.mark.parametrize("field, value, fragment", [
    ("top_p", 2.0, "llm.model.top_p must be a number from 0 to 1"),
    ("stop", ["a"] * 5, "llm.model.stop takes at most 4"),
    ("seed", True, "llm.model.seed must be an integer"),
    ("reasoning_effort", "huge", "llm.model.reasoning_effort must be one of"),
    ("max_tokens_field", "tokens", "llm.model.max_tokens_field must be one of auto"),
])
def test_config_defaults_are_checked_by_the_same_rules(field, value, fragment):
    from cowork_llm.errors import ConfigError

    with pytest.raises(ConfigError, match=fragment) as caught:
        model(**{field: value})
    assert caught.value.key == f"llm.model.{field}"


def test_the_cache_material_differs_for_every_option_that_changes_the_answer():
    variants = [{}, {"temperature": 0.5}, {"max_tokens": 9}, {"top_p": 0.5}, {"stop": "x"}, {"seed": 1},
                {"seed": 2}, {"response_format": {"type": "json_object"}}, {"response_format": SCHEMA},
                {"reasoning_effort": "low"}, {"extra_body": {"logprobs": True}}]
    materials = [ChatOptions.of(**v).cache_material() for v in variants]
    assert len({repr(sorted(m.items())) for m in materials}) == len(variants)
    assert ChatOptions.of(cache=False).cache_material() == {}  # cache= is not part of the answer


# --- structured output ------------------------------------------------------------------------


class Size(enum.Enum):
    SMALL = "small"
    BIG = "big"


@dataclasses.dataclass
class Address:
    street: str
    number: int


@dataclasses.dataclass
class City:
    name: str
    population: int
    area_km2: float
    capital: bool
    size: Size
    kind: Literal["city", "town"]
    districts: List[str]
    address: Optional[Address]
    tags: Tuple[str, ...]


def test_a_dataclass_becomes_a_strict_schema_and_the_answer_an_instance():
    fmt = check_response_format(City)
    assert fmt is not None and fmt.target is City and fmt.strict is True and fmt.name == "City"
    schema = fmt.to_openai()["json_schema"]["schema"]
    assert schema["required"] == [f.name for f in dataclasses.fields(City)]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["size"] == {"enum": ["small", "big"]}
    answer = ('{"name": "Oslo", "population": 700000, "area_km2": 454, "capital": true, "size": "big",'
              ' "kind": "city", "districts": ["Frogner"],'
              ' "address": {"street": "Karl Johans gate", "number": 1},'
              ' "tags": ["north"]}')
    city = parse_answer(answer, fmt)
    assert city == City("Oslo", 700000, 454.0, True, Size.BIG, "city", ["Frogner"],
                        Address("Karl Johans gate", 1), ("north",))
    assert isinstance(city.area_km2, float)


def test_a_field_without_a_schema_is_named():
    @dataclasses.dataclass
    class Bad:
        when: object

    with pytest.raises(ValueError, match=r"field Bad\.when has type"):
        schema_of_dataclass(Bad)


@pytest.mark.parametrize("text, fragment, schema_error", [
    ("not json", "not valid JSON", "Expecting value"),
    ('{"name": "Oslo"}', "does not match", "'population' is a required property"),
    ('{"name": "Oslo", "population": "many"}', "does not match", "['population']: 'many' is not of type"),
])
def test_an_answer_that_does_not_match_carries_the_raw_text_and_the_first_error(text, fragment, schema_error):
    fmt = check_response_format(SCHEMA)
    with pytest.raises(InvalidResponseError, match=fragment) as caught:
        parse_answer(text, fmt, request_id="req_1")
    error = caught.value
    assert error.raw_text == text and schema_error in error.schema_error and error.request_id == "req_1"
    copy = pickle.loads(pickle.dumps(error))  # raw_text and schema_error survive a process pool
    assert (copy.raw_text, copy.schema_error, copy.request_id) == (text, error.schema_error, "req_1")


def test_json_object_needs_an_object_and_a_fenced_answer_is_read_inside_the_fence():
    fmt = check_response_format({"type": "json_object"})
    assert parse_answer('```json\n{"a": 1}\n```', fmt) == {"a": 1}
    with pytest.raises(InvalidResponseError, match="is not of type 'object'"):
        parse_answer("[1, 2]", fmt)
    assert parse_answer("plain", check_response_format({"type": "text"})) is None
