"""FakeLlmServer checked by software we did not write: the official ``openai`` and
``anthropic`` SDKs, pointed at it, parse its answers — plain, streamed, structured and
errors — with their own types and error classes. Both SDKs are in the ``test`` extra."""

import json

import pytest
from pydantic import BaseModel

from cowork_llm.testing import FakeLlmServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

KEY = "sk-sdk-test-0123456789abcdef"
HI = [{"role": "user", "content": "hi there"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
          "required": ["city", "people"], "additionalProperties": False}


class Place(BaseModel):
    city: str
    people: int


@pytest.fixture(scope="module")
def server():
    with FakeLlmServer(api_key=KEY, models=["fake-model", "o3-mini", "claude-fake"]) as fake:
        yield fake


@pytest.fixture
def oai(server):
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=10) as client:
        yield client


@pytest.fixture
def claude(server):
    base = server.base_url.removesuffix("/v1")  # the SDK adds /v1/messages itself
    with anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0, timeout=10) as client:
        yield client


# --- openai ----------------------------------------------------------------------------------


def test_openai_sdk_reads_a_completion_with_usage_details(oai):
    completion = oai.chat.completions.create(model="fake-model", messages=HI, max_completion_tokens=50,
                                             seed=1, stop=["zzz"])
    assert completion.choices[0].message.content == "echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_openai_sdk_reads_a_stream(oai):
    stream = oai.chat.completions.create(model="fake-model", messages=HI, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hi there" and chunks[-1].usage.total_tokens > 0


def test_openai_sdk_parses_structured_output(oai):
    completion = oai.chat.completions.parse(model="fake-model", messages=HI, response_format=Place)
    assert completion.choices[0].message.parsed == Place(city="text", people=1)
    plain = oai.chat.completions.create(model="fake-model", messages=HI,
                                        response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content) == {}


def test_openai_sdk_reads_the_reasoning_model_400_as_openai_sends_it(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="o3-mini", messages=HI, max_tokens=10)
    error = caught.value
    assert error.status_code == 400 and error.code == "unsupported_parameter" and error.param == "max_tokens"
    assert "Use 'max_completion_tokens' instead" in error.message
    assert oai.chat.completions.create(model="o3-mini", messages=HI,
                                       max_completion_tokens=10).choices[0].message.content


@pytest.mark.parametrize("setup, error_class", [
    (lambda s: s.fail_next(status=429, retry_after=1), "RateLimitError"),
    (lambda s: s.fail_next(status=500), "InternalServerError"),
    (lambda s: s.quota_exceeded_next(), "RateLimitError"),
])
def test_openai_sdk_maps_the_fakes_errors(server, oai, setup, error_class):
    setup(server)
    with pytest.raises(getattr(openai, error_class)) as caught:
        oai.chat.completions.create(model="fake-model", messages=HI)
    assert caught.value.request_id and caught.value.request_id.startswith("req_fake")


def test_openai_sdk_sees_an_unknown_model_as_not_found(oai):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="no-such-model", messages=HI)
    assert caught.value.code == "model_not_found"


# --- anthropic ---------------------------------------------------------------------------------


def test_anthropic_sdk_reads_a_message_with_bearer_auth(server, claude):
    message = claude.messages.create(model="claude-fake", max_tokens=100, messages=HI, system="terse",
                                     stop_sequences=["zzz"])
    assert message.content[0].text == "echo: hi there" and message.stop_reason == "end_turn"
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0
    headers = server.last_request.headers
    assert headers["authorization"] == f"Bearer {KEY}" and "anthropic-version" in headers


def test_anthropic_sdk_reads_a_stream(claude):
    with claude.messages.stream(model="claude-fake", max_tokens=100, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hi there" and final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


def test_anthropic_sdk_reads_structured_output(claude):
    message = claude.messages.create(model="claude-fake", max_tokens=100, messages=HI,
                                     output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    assert json.loads(message.content[0].text) == {"city": "text", "people": 1}
    parsed = claude.messages.parse(model="claude-fake", max_tokens=100, messages=HI, output_format=Place)
    assert parsed.parsed_output == Place(city="text", people=1)


def test_anthropic_sdk_sees_anthropics_error_types_and_request_ids(server, claude):
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=HI)
    error = caught.value
    assert error.body["error"]["type"] == "not_found_error"
    assert error.request_id and error.body["request_id"] == error.request_id
    server.fail_next(status=529)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="claude-fake", max_tokens=10, messages=HI)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    server.fail_next(status=429)
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="claude-fake", max_tokens=10, messages=HI)


def test_anthropic_sdk_with_a_wrong_key_is_an_authentication_error(server):
    base = server.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=base, api_key="sk-wrong-000000000000", max_retries=0) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model="claude-fake", max_tokens=10, messages=HI)
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_an_unknown_path_is_anthropics_not_found_error_for_an_anthropic_client(server, claude):
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.get("/v1/no-such-endpoint", cast_to=object)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert caught.value.body["request_id"] == caught.value.request_id
