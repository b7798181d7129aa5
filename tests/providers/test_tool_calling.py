"""Tool calling on both wire formats: request bodies with tools, tool_choice, tool calls
and tool results (checked against OpenAI's official spec and the anthropic SDK's types),
the orphan check, answers and streams through FakeLlmServer, invalid arguments, and the
official SDKs reading the fake's tool-call answers (plain and streamed)."""

import json

import pytest

from cowork_llm import InvalidResponseError, create_llm_client
from cowork_llm.config import CacheConfig, ModelConfig
from cowork_llm.providers.anthropic import AnthropicClient
from cowork_llm.providers.openai import OpenAIClient
from cowork_llm.results import ToolCall
from cowork_llm.testing import FakeLlmServer, tool_call

from ._wire_checks import check_anthropic_body, openai_request_validator

KEY = "sk-tools-test-0123456789SECRET"


def get_weather(city: str, unit: str = "celsius") -> dict:
    """Get the current weather.

    Args:
        city: the city name
        unit: celsius or fahrenheit
    """
    return {"city": city, "unit": unit, "sky": "sunny"}


LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                           "parameters": {"type": "object", "properties": {
                                               "word": {"type": "string"}}, "required": ["word"]}}}
ASK = [{"role": "user", "content": "Weather in Oslo and Bergen?"}]
CALLS = {"role": "assistant", "content": None, "tool_calls": [
    {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(
        {"city": city})}} for i, city in ((1, "Oslo"), (2, "Bergen"))]}
RESULTS = [{"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
           {"role": "tool", "tool_call_id": "call_2", "content": "Error: no station", "is_error": True}]
CONVERSATION = ASK + [CALLS] + RESULTS + [{"role": "user", "content": "And tomorrow?"}]


def config(provider="openai", **fields):
    return ModelConfig(base_url="https://api.example.com/v1", api_key=KEY, model_name="m", provider=provider,
                       **fields)


TOOL_OPTIONS = [
    {"tools": [get_weather]}, {"tools": [get_weather, LOOKUP], "tool_choice": "auto"},
    {"tools": [get_weather], "tool_choice": "required", "parallel_tool_calls": False},
    {"tools": [LOOKUP], "tool_choice": "none"},
    {"tools": [get_weather, LOOKUP], "tool_choice": {"type": "function", "function": {"name": "lookup"}},
     "parallel_tool_calls": True},
]


# --- request bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("messages", [ASK, CONVERSATION], ids=["ask", "conversation"])
@pytest.mark.parametrize("options", TOOL_OPTIONS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_bodies_validate_against_the_official_spec(messages, options, stream):
    with OpenAIClient(config()) as llm:
        body = llm.request_body(messages, stream=stream, **options)
    openai_request_validator().validate(body)
    assert [t["function"]["name"] for t in body["tools"]] == [
        t.__name__ if callable(t) else t["function"]["name"] for t in options["tools"]]
    assert all("is_error" not in m for m in body["messages"])  # ours, not OpenAI's


@pytest.mark.parametrize("messages", [ASK, CONVERSATION], ids=["ask", "conversation"])
@pytest.mark.parametrize("options", TOOL_OPTIONS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_bodies_validate_against_the_official_sdk_types(messages, options, stream):
    with AnthropicClient(config("anthropic")) as llm:
        body = llm.request_body(messages, stream=stream, **options)
    check_anthropic_body(body)


def test_the_spec_checks_see_a_bad_tool_body():
    import jsonschema
    import pydantic

    with OpenAIClient(config()) as llm:
        body = llm.request_body(ASK, tools=[get_weather])
    with pytest.raises(jsonschema.ValidationError):
        openai_request_validator().validate(dict(body, tool_choice="sometimes"))
    with AnthropicClient(config("anthropic")) as llm:
        body = llm.request_body(ASK, tools=[get_weather])
    with pytest.raises(pydantic.ValidationError):
        check_anthropic_body(dict(body, tools=[{"name": "f", "parameters": {}}]))


def test_the_anthropic_translation_both_ways():
    with AnthropicClient(config("anthropic")) as llm:
        body = llm.request_body(CONVERSATION, tools=[get_weather], tool_choice="required",
                                parallel_tool_calls=False)
    assert body["tools"] == [{"name": "get_weather", "description": "Get the current weather.",
                              "input_schema": body["tools"][0]["input_schema"]}]
    assert body["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string",
                                                                       "description": "the city name"}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use", "tool_use"]
    assert body["messages"][1]["content"][1]["input"] == {"city": "Bergen"}
    merged = body["messages"][2]["content"]
    assert [b["type"] for b in merged] == ["tool_result", "tool_result", "text"]
    assert merged[1] == {"type": "tool_result", "tool_use_id": "call_2", "content": "Error: no station",
                         "is_error": True}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_orphan_tool_result_is_a_value_error_before_sending(provider):
    client = OpenAIClient(config()) if provider == "openai" else AnthropicClient(config("anthropic"))
    with client as llm, pytest.raises(ValueError, match=r"messages\[1\] answers tool call 'call_9'"):
        llm.request_body(ASK + [{"role": "tool", "tool_call_id": "call_9", "content": "x"}])


@pytest.mark.parametrize("message, words", [
    ({"role": "assistant", "content": None}, r"messages\[1\]\['content'\] must be a string"),
    ({"role": "assistant", "content": None, "tool_calls": []}, "must be a non-empty list"),
    ({"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "f"}}]},
     r"\['tool_calls'\]\[0\]\['id'\] must be a non-empty string"),
    ({"role": "tool", "content": "x"}, "needs 'tool_call_id'"),
    ({"role": "tool", "tool_call_id": "c", "content": "x", "is_error": "yes"}, "is_error'\\] must be True"),
])
def test_bad_tool_messages_are_value_errors(message, words):
    with OpenAIClient(config()) as llm, pytest.raises(ValueError, match=words):
        llm.request_body(ASK + [message])


@pytest.mark.parametrize("options, words", [
    ({"tool_choice": "auto"}, "tool_choice was given without tools"),
    ({"tools": [get_weather], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "'nope', which is not among the tools"),
    ({"tools": [lambda x: x]}, "cannot be a tool"),
])
def test_bad_tool_options_are_value_errors(options, words):
    with OpenAIClient(config()) as llm, pytest.raises(ValueError, match=words):
        llm.request_body(ASK, **options)


# --- answers through FakeLlmServer ------------------------------------------------------------


def weather_then_answer(messages):
    """The fake model: a tool call for the user's question, then an answer once a tool
    result is in the conversation (in either wire format)."""
    for message in messages:
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if message.get("role") == "tool" or any(b.get("type") == "tool_result" for b in blocks):
            return "It is sunny in Oslo and Bergen."
    return [tool_call("get_weather", city="Oslo"), tool_call("get_weather", city="Bergen", unit="celsius")]


@pytest.fixture(params=["openai", "anthropic"])
def provider(request):
    return request.param


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY, reply=weather_then_answer) as srv:
        yield srv


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_come_back_as_tool_calls_plain_and_streamed(server, provider, stream):
    with create_llm_client(server.config(provider=provider)) as llm:
        if stream:
            answer = llm.stream(ASK, tools=[get_weather])
            assert list(answer) == []
        else:
            answer = llm.chat(ASK, tools=[get_weather])
            assert answer.content == ""
        calls = answer.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Bergen", "unit": "celsius"})]
    assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)
    assert answer.finish_reason == ("tool_use" if provider == "anthropic" else "tool_calls")


def test_a_tool_result_conversation_is_accepted_and_answered(server, provider):
    with create_llm_client(server.config(provider=provider)) as llm:
        first = llm.chat(ASK, tools=[get_weather])
        transcript = ASK + [{"role": "assistant", "content": None,
                             "tool_calls": [c.to_message() for c in first.tool_calls]}]
        transcript += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in first.tool_calls]
        second = llm.chat(transcript, tools=[get_weather])
    assert second.content == "It is sunny in Oslo and Bergen." and second.tool_calls == ()


@pytest.mark.parametrize("stream", [False, True])
def test_arguments_that_are_not_json_are_an_invalid_response_error_with_the_raw_text(stream):
    broken = ToolCall(id="", name="get_weather", arguments={}, raw_arguments='{"city": "Os')
    with FakeLlmServer(reply=lambda messages: broken) as server:
        with create_llm_client(server.config(max_attempts=1)) as llm:
            with pytest.raises(InvalidResponseError, match="not valid JSON: '\\{\"city\": \"Os'"):
                if stream:
                    list(llm.stream(ASK, tools=[get_weather]))
                else:
                    llm.chat(ASK, tools=[get_weather])


def test_a_cached_tool_call_answer_keeps_its_calls(server, tmp_path):
    for cache in (CacheConfig(backend="memory"), CacheConfig(backend="sqlite", path=str(tmp_path / "c.db"))):
        with create_llm_client(server.config(cache=cache)) as llm:
            first = llm.chat(ASK, tools=[get_weather])
            again = llm.chat(ASK, tools=[get_weather])
            other = llm.chat(ASK, tools=[get_weather], tool_choice="required")  # another key
        assert again.cached and again.tool_calls == first.tool_calls
        assert not other.cached


# --- the official SDKs read the fake's tool answers ------------------------------------------


def test_the_openai_sdk_parses_tool_calls_plain_and_streamed(server):
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    answer = sdk.chat.completions.create(model="fake-model", messages=ASK, tools=tools)
    calls = answer.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Oslo"},
                                                                 {"city": "Bergen", "unit": "celsius"}]
    assert answer.choices[0].finish_reason == "tool_calls"
    pieces = {}
    for chunk in sdk.chat.completions.create(model="fake-model", messages=ASK, tools=tools, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = pieces.setdefault(delta.index, {"name": "", "arguments": ""})
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
    assert [json.loads(p["arguments"]) for p in pieces.values()] == [{"city": "Oslo"},
                                                                     {"city": "Bergen", "unit": "celsius"}]


def test_the_anthropic_sdk_parses_tool_use_plain_and_streamed(server):
    anthropic = pytest.importorskip("anthropic")
    sdk = anthropic.Anthropic(base_url=server.base_url.removesuffix("/v1"), api_key=KEY, max_retries=0)
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    message = sdk.messages.create(model="fake-model", max_tokens=100, messages=ASK, tools=tools)
    assert message.stop_reason == "tool_use"
    assert [b.input for b in message.content] == [{"city": "Oslo"}, {"city": "Bergen", "unit": "celsius"}]
    with sdk.messages.stream(model="fake-model", max_tokens=100, messages=ASK, tools=tools) as stream:
        final = stream.get_final_message()  # the SDK assembles input_json_delta itself
    assert [(b.type, b.input) for b in final.content] == [("tool_use", {"city": "Oslo"}),
                                                          ("tool_use", {"city": "Bergen", "unit": "celsius"})]
