"""The pieces of tool calling below chat(): tools and tool_choice checked and put in
OpenAI's form, tool calls decoded from answers and assembled from stream pieces (bad
arguments are the provider's fault: InvalidResponseError with the raw text), and the
Anthropic translation both ways."""

import json

import pytest

from cowork_llm.errors import InvalidResponseError
from cowork_llm.providers._anthropic_tools import anthropic_tool_choice, anthropic_tools, anthropic_turns
from cowork_llm.providers._tool_calls import ToolCallAssembler, anthropic_tool_calls, openai_tool_calls
from cowork_llm.tools._normalize import check_parallel_tool_calls, check_tool_choice, normalize_tools


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def invalid(what):
    return InvalidResponseError(f"unusable: {what}")


def get_weather(city: str) -> str:
    """Weather for a city."""
    return "sunny"


WEATHER_DICT = {"type": "function", "function": {"name": "lookup", "description": "Look up",
                                                 "parameters": {"type": "object", "properties": {}}}}


# --- tools and tool_choice -----------------------------------------------------------------


def test_functions_and_dicts_become_openai_tools_and_functions_are_kept_by_name():
    specs, functions = normalize_tools([get_weather, WEATHER_DICT])
    assert [s["function"]["name"] for s in specs] == ["get_weather", "lookup"]
    assert specs[1] == WEATHER_DICT
    assert functions == {"get_weather": get_weather}


@pytest.mark.parametrize("tools, words", [
    ("get_weather", r"^tools must be a list of functions or "
                    r"\{'type': 'function', 'function': \{\.\.\.\}\} dicts$"),
    ([], r"^tools must not be empty \(leave it out, or None, for no tools\)$"),
    ([42], r"^tools\[0\] must be a function or a tool dict, got int$"),
    ([{"type": "retrieval"}], r"tools\[0\] must be \{'type': 'function'"),
    ([{"type": "function", "function": {"name": "has space"}}], r"tools\[0\]\['function'\]\['name'\]"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
     "must be a JSON schema of type 'object'"),
    ([{"type": "function", "function": {"name": "f", "paramters": {}}}], "unknown key\\(s\\) paramters"),
    ([{"type": "function", "function": {"name": "f", "description": 5}}],
     r"tools\[0\]\['function'\]\['description'\] must be a string"),
    ([get_weather, get_weather], "a second tool named 'get_weather'"),
])
def test_bad_tools_are_value_errors(tools, words):
    with pytest.raises(ValueError, match=words):
        normalize_tools(tools)


@pytest.mark.parametrize("choice, expected", [
    (None, None), ("auto", "auto"), ("none", "none"), ("required", "required"),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice_accepted(choice, expected):
    assert check_tool_choice(choice, ["get_weather"]) == expected


@pytest.mark.parametrize("choice, names, words", [
    ("any", ["f"], "tool_choice must be one of auto, none, required"),
    ({"type": "function", "function": {"name": "g"}}, ["f", "h"],
     r"^tool_choice names 'g', which is not among the tools \(f, h\)$"),
    ({"type": "function"}, ["f"], r"^tool_choice must be 'auto', 'none', 'required' or \{'type': 'function', "
                                  r"'function': \{'name': \.\.\.\}\}, got \{'type': 'function'\}$"),
    ("auto", None, "^tool_choice was given without tools$"),
])
def test_bad_tool_choice_is_a_value_error(choice, names, words):
    with pytest.raises(ValueError, match=words):
        check_tool_choice(choice, names)


def test_a_tool_dicts_parameters_may_leave_out_the_object_type_and_strict_is_kept():
    lookup = {"type": "function", "function": {"name": "lookup", "strict": True, "parameters": {
        "properties": {"word": {"type": "string"}}}}}
    (spec,), _ = normalize_tools([lookup])
    assert spec == lookup


def test_unknown_keys_of_a_tool_dict_are_all_named():
    with pytest.raises(ValueError) as raised:
        normalize_tools([{"type": "function", "function": {"name": "f", "paramters": {}, "desc": ""}}])
    assert str(raised.value) == "tools[0]['function'] has unknown key(s) desc, paramters"


def test_a_tool_dict_of_another_type_is_refused_with_the_shape_it_must_have():
    with pytest.raises(ValueError) as raised:
        normalize_tools([get_weather, {"type": "retrieval", "function": {"name": "lookup"}}])
    assert str(raised.value) == ("tools[1] must be {'type': 'function', 'function': {'name': ..., "
                                 "'parameters': {...}}} (or a Python function)")


@pytest.mark.parametrize("choice", [True, 1, ["auto"]])
def test_a_tool_choice_of_another_kind_is_a_value_error(choice):
    with pytest.raises(ValueError, match="tool_choice must be 'auto', 'none', 'required' or"):
        check_tool_choice(choice, ["get_weather"])


def test_parallel_tool_calls_is_a_bool_with_tools():
    assert check_parallel_tool_calls(False, True) is False
    with pytest.raises(ValueError, match="True, False or None"):
        check_parallel_tool_calls("no", True)
    with pytest.raises(ValueError, match="^parallel_tool_calls was given without tools$"):
        check_parallel_tool_calls(True, False)


# --- answers -------------------------------------------------------------------------------


def test_openai_tool_calls_are_decoded():
    raw = [call("call_1", "get_weather", '{"city": "Oslo"}'), call("call_2", "ping", "")]
    first, second = openai_tool_calls(raw, invalid)
    assert (first.id, first.name, first.arguments, first.raw_arguments) == \
        ("call_1", "get_weather", {"city": "Oslo"}, '{"city": "Oslo"}')
    assert second.arguments == {}
    assert openai_tool_calls(None, invalid) == ()


@pytest.mark.parametrize("arguments, words", [
    ('{"city": "Os', "are not valid JSON: '\\{\"city\": \"Os'"),
    ('["Oslo"]', "are not a JSON object"),
])
def test_arguments_that_are_not_a_json_object_are_invalid_response_errors_with_the_raw_text(arguments, words):
    raw = [call("c", "get_weather", arguments)]
    with pytest.raises(InvalidResponseError, match=words):
        openai_tool_calls(raw, invalid)


def test_anthropic_tool_use_blocks_are_decoded():
    content = [{"type": "text", "text": "Let me look."},
               {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]
    (call,) = anthropic_tool_calls(content, invalid)
    assert (call.id, call.name, call.arguments) == ("toolu_1", "get_weather", {"city": "Oslo"})
    assert json.loads(call.raw_arguments) == {"city": "Oslo"}
    with pytest.raises(InvalidResponseError, match="not a JSON object"):
        anthropic_tool_calls([{"type": "tool_use", "id": "t", "name": "f", "input": "Oslo"}], invalid)


def test_openai_stream_pieces_are_assembled_in_index_order():
    assembler = ToolCallAssembler()
    assembler.add_openai_deltas([{"index": 1, "id": "call_b", "type": "function",
                                  "function": {"name": "ping", "arguments": ""}}])
    assembler.add_openai_deltas([{"index": 0, "id": "call_a",
                                  "function": {"name": "get_weather", "arguments": '{"ci'}}])
    assembler.add_openai_deltas([{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}])
    first, second = assembler.calls(invalid)
    assert (first.id, first.arguments) == ("call_a", {"city": "Oslo"})
    assert first.raw_arguments == '{"city": "Oslo"}'
    assert (second.id, second.name, second.arguments) == ("call_b", "ping", {})


def test_a_stream_cut_inside_the_arguments_is_an_invalid_response_error():
    assembler = ToolCallAssembler()
    assembler.add(0, call_id="toolu_1", name="get_weather")
    assembler.add(0, arguments='{"city": ')
    with pytest.raises(InvalidResponseError, match="not valid JSON"):
        assembler.calls(invalid)


# --- Anthropic translation -----------------------------------------------------------------


def plain(i, message):
    return {"role": message["role"], "content": message["content"]}


def test_tools_and_tool_choice_in_anthropics_terms():
    specs, _ = normalize_tools([get_weather])
    (tool,) = anthropic_tools(specs)
    assert tool["name"] == "get_weather" and tool["description"] == "Weather for a city."
    assert tool["input_schema"]["properties"]["city"] == {"type": "string"}
    assert anthropic_tool_choice(None, None) is None
    assert anthropic_tool_choice("auto", None) == {"type": "auto"}
    assert anthropic_tool_choice("required", None) == {"type": "any"}
    assert anthropic_tool_choice("none", False) == {"type": "none"}
    assert anthropic_tool_choice({"type": "function", "function": {"name": "f"}}, False) == \
        {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert anthropic_tool_choice(None, False) == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_calls_and_results_become_tool_use_and_one_merged_tool_result_turn():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            call("t1", "get_weather", '{"city": "Oslo"}'), call("t2", "get_weather", '{"city": "Bergen"}')]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: no station", "is_error": True},
        {"role": "user", "content": "And tomorrow?"},
    ]
    turns = anthropic_turns(messages, plain)
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "t2", "name": "get_weather", "input": {"city": "Bergen"}}]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "t2", "content": "Error: no station", "is_error": True},
        {"type": "text", "text": "And tomorrow?"}]


def test_an_assistant_message_with_only_tool_calls_has_only_tool_use_blocks():
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call("t1", "ping", "")]},
                {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "pong"}]}]
    turns = anthropic_turns(messages, plain)
    assert turns[1]["content"] == [{"type": "tool_use", "id": "t1", "name": "ping", "input": {}}]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "t1",
                                    "content": [{"type": "text", "text": "pong"}]}]


def test_the_token_estimate_counts_tool_call_arguments_and_tool_definitions():
    from cowork_llm.rate_limiter._rates import estimate_request_tokens

    ask = [{"role": "user", "content": "hi"}]
    with_call = ask + [{"role": "assistant", "content": None,
                        "tool_calls": [call("c", "get_weather", '{"city": "' + "x" * 400 + '"}')]}]
    specs, _ = normalize_tools([get_weather])
    assert estimate_request_tokens(with_call, 1) >= estimate_request_tokens(ask, 1) + 100
    assert estimate_request_tokens(ask, 1, specs) > estimate_request_tokens(ask, 1)
