"""Tool calling against llama.cpp's own server with a tool-capable chat template
(``--jinja``, LlamaCppServer(tools=True)). Gemma 3 270M is a base model and calls tools
poorly: these tests assert the protocol — our tool bodies and tool results are accepted
and rendered, the model's calls come back parsed (or refused when cut short), run_tools
runs our function and sends its result back — not the model's judgement.
docs/llamacpp-notes.md ("Tool calling") says what was seen."""

import dataclasses
import os
from typing import Any, Iterator, List

import pytest

from cowork_llm import InvalidResponseError, MaxStepsError, RetryConfig, create_llm_client

from .conftest import _missing_packages

pytestmark = [pytest.mark.realserver, pytest.mark.timeout(900)]  # 1-2 tokens/s on a busy machine

CALLED: List[str] = []


def get_weather(city: str) -> dict:
    """Get the current weather for a city.

    Args:
        city: the city name
    """
    CALLED.append(city)
    return {"city": city, "sky": "cloudy", "celsius": 12}


# One worked example, so the base model has a pattern to follow.
FEW_SHOT = [
    {"role": "system", "content": "You call tools to answer."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": '{"city": "Paris", "sky": "sunny", "celsius": 20}'},
    {"role": "assistant", "content": "It is sunny in Paris."},
    {"role": "user", "content": "What is the weather in Oslo?"},
]


@pytest.fixture(scope="module")
def tool_server() -> Iterator[Any]:
    missing = _missing_packages()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the realserver tests must run, but {missing}", pytrace=False)
        pytest.skip(missing)
    from cowork_llm.testing.llamacpp import LlamaCppServer

    with LlamaCppServer(tools=True, n_ctx=4096) as server:
        yield server


@pytest.fixture
def llm(tool_server: Any) -> Iterator[Any]:
    config = tool_server.config(max_tokens=64, timeout_seconds=600.0)
    client = create_llm_client(dataclasses.replace(config, retry=RetryConfig(max_attempts=1)))
    yield client
    client.close()


def test_tools_and_tool_results_are_accepted_and_rendered(llm: Any) -> None:
    question = FEW_SHOT[-1:]
    plain = llm.chat(question, max_tokens=1)
    with_tools = llm.chat(question, tools=[get_weather], max_tokens=1)
    with_history = llm.chat(FEW_SHOT, tools=[get_weather], max_tokens=1)
    # The template puts the tools in the prompt, and the tool call and result after them.
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 30
    assert with_history.usage.prompt_tokens > with_tools.usage.prompt_tokens + 30


# A conversation that ends in a tool result: seen on this server, the model then goes on
# with another <tool_call> (answering a fresh question it tends to talk instead).
AFTER_A_RESULT = [
    {"role": "user", "content": "What is the weather in Paris and in Oslo? Use the tool for each city."},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": '{"city": "Paris", "sky": "sunny", "celsius": 20}'},
]


def test_run_tools_round_trip(llm: Any) -> None:
    CALLED.clear()
    try:
        run = llm.run_tools(AFTER_A_RESULT, [get_weather], max_steps=2)
        steps, messages = run.steps, run.messages
    except MaxStepsError as error:  # the model kept calling: still a full round trip
        steps, messages = error.steps, error.messages
    except InvalidResponseError as error:  # a call cut short by max_tokens: refused, not guessed
        assert "not valid JSON" in str(error)
        pytest.skip(f"the model's tool call was cut short: {error}")
    first = steps[0].result
    if not first.tool_calls:
        pytest.skip(f"the model answered without calling a tool: {first.content[:80]!r}")
    call = first.tool_calls[0]
    assert isinstance(call.arguments, dict) and call.id
    # Our answer to the call went back to the server, which took it and answered again.
    answer = messages[len(AFTER_A_RESULT) + 1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == call.id
    if answer.get("is_error"):  # a name or arguments that do not fit: told to the model
        assert answer["content"].startswith("Error: ") and not CALLED
    else:
        assert CALLED[0] == call.arguments["city"] and '"celsius": 12' in answer["content"]
    assert len(steps) == 2
