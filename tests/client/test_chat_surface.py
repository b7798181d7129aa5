"""The whole modern request through create_llm_client, on both providers, against
FakeLlmServer: structured output (ChatResult.parsed), stop, usage details, the cache key
covering every option, generate_content with options, MockLlm's record."""

import dataclasses
from typing import List

import pytest

from cowork_llm import create_llm_client
from cowork_llm.config import CacheConfig, ModelConfig
from cowork_llm.errors import InvalidResponseError
from cowork_llm.testing import FakeLlmServer, MockLlm

HELLO = [{"role": "user", "content": "Name a city"}]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "schema": {
    "type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"},
                                     "districts": {"type": "array", "items": {"type": "string"},
                                                   "minItems": 2}},
    "required": ["name", "population", "districts"], "additionalProperties": False}}}


@dataclasses.dataclass
class City:
    name: str
    population: int
    districts: List[str]


@pytest.fixture(scope="module")
def server():
    with FakeLlmServer() as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    return server


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_structured_output_is_parsed_and_checked(fake, provider):
    with create_llm_client(fake.config(provider=provider, key=f"structured-{provider}")) as llm:
        result = llm.chat(HELLO, response_format=SCHEMA)
        city = llm.chat(HELLO, response_format=City).parsed
    assert result.parsed == {"name": "text", "population": 1, "districts": ["text", "text"]}
    assert city == City("text", 1, ["text"])  # the dataclass's schema has no minItems
    body = fake.chat_requests[0].body
    if provider == "openai":
        assert body["response_format"] == SCHEMA
    else:
        assert body["output_config"]["format"]["schema"] == SCHEMA["json_schema"]["schema"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_answer_that_does_not_match_is_an_invalid_response_not_retried_by_default(provider):
    with FakeLlmServer(reply=lambda messages: '{"name": "Oslo"}') as fake:
        with create_llm_client(fake.config(provider=provider, key=f"bad-json-{provider}")) as llm:
            with pytest.raises(InvalidResponseError) as caught:
                llm.chat(HELLO, response_format=City)
            usage = llm.usage().total
    error = caught.value
    assert error.raw_text == '{"name": "Oslo"}'
    assert "'population' is a required property" in error.schema_error
    assert error.request_id and error.attempts == 1 and fake.request_count == 1
    assert usage.failures == 1


def test_on_invalid_json_retries_within_the_attempt_budget():
    answers = iter(['not json', '{"name": "Oslo"}', '{"name": "Oslo", "population": 7, "districts": []}'])
    with FakeLlmServer(reply=lambda messages: next(answers)) as fake:
        config = fake.config(on_invalid_json=True, max_attempts=3, key="retry-json")
        with create_llm_client(config) as llm:
            city = llm.chat(HELLO, response_format=City).parsed
            usage = llm.usage().total
    assert city == City("Oslo", 7, []) and fake.request_count == 3 and usage.retries == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stop_and_usage_details(fake, provider):
    with create_llm_client(fake.config(provider=provider, key=f"stop-{provider}")) as llm:
        result = llm.chat([{"role": "user", "content": "one two STOP three"}], stop=["STOP"])
    assert result.content == "echo: one two "
    assert result.finish_reason == ("stop" if provider == "openai" else "stop_sequence")
    usage = result.usage
    assert usage is not None and usage.cached_prompt_tokens == 0  # said by the server: 0, not None
    if provider == "openai":
        assert usage.reasoning_tokens == 0 and usage.cache_creation_tokens is None  # OpenAI has no such count
    else:
        assert usage.cache_creation_tokens == 0 and usage.reasoning_tokens is None  # not said: None


def test_two_calls_differing_in_one_option_never_share_a_cache_entry(fake):
    config = fake.config(cache=CacheConfig(backend="memory"), key="cache-options")
    variants = [{}, {"seed": 1}, {"seed": 2}, {"top_p": 0.5}, {"stop": "zzz"},
                {"response_format": {"type": "json_object"}}, {"response_format": City},
                {"reasoning_effort": "low"}, {"extra_body": {"user": "u1"}}]
    with create_llm_client(config) as llm:
        for options in variants:
            assert not llm.chat(HELLO, **options).cached
        for options in variants:
            again = llm.chat(HELLO, **options)
            assert again.cached
            if "response_format" in options:  # a hit is parsed again
                assert again.parsed is not None
    assert fake.request_count == len(variants)


def test_generate_content_and_stream_take_the_same_options(fake):
    with create_llm_client(fake.config(key="generate-options")) as llm:
        assert llm.generate_content("a b STOP c", stop="STOP", seed=3) == "echo: a b "
        with llm.stream_content("x y STOP z", stop="STOP", seed=4, max_tokens=20) as stream:
            assert "".join(stream) == "echo: x y "
        assert stream.usage is not None and stream.usage.cached_prompt_tokens == 0
    first, second = (r.body for r in fake.chat_requests)
    assert (first["seed"], second["seed"], second["max_tokens"]) == (3, 4, 20)


def test_a_streamed_result_has_a_request_id_from_the_chunks_without_a_header():
    """llama.cpp sends no request-id header: the chunks' id stands in, as chat() does."""
    import responses

    from cowork_llm.providers.openai import OpenAIClient

    chunk = ('data: {"id": "chatcmpl-abc123", "object": "chat.completion.chunk", "model": "m", '
             '"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}\n\n'
             'data: [DONE]\n\n')
    model = ModelConfig(base_url="http://127.0.0.1:9/v1", api_key="sk-test-0123456789abcdef", model_name="m")
    with responses.RequestsMock() as mock, OpenAIClient(model) as llm:
        mock.post("http://127.0.0.1:9/v1/chat/completions", body=chunk, content_type="text/event-stream")
        with llm.stream(HELLO) as stream:
            assert "".join(stream) == "hi"
    assert stream.request_id == "chatcmpl-abc123"


def test_mock_llm_records_every_option_and_answers_parsed_json():
    llm = MockLlm()
    city = llm.chat(HELLO, response_format=City, seed=5).parsed
    assert city == City("text", 1, ["text"])
    assert llm.last_call.options["seed"] == 5 and llm.last_call.options["response_format"].target is City
    scripted = MockLlm([{"name": "Oslo", "population": 7, "districts": []}, "oops"])
    assert scripted.chat(HELLO, response_format=City).parsed == City("Oslo", 7, [])
    with pytest.raises(InvalidResponseError, match="not valid JSON"):
        scripted.chat(HELLO, response_format=City)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_streamed_structured_answer_is_parsed_at_the_end(fake, provider):
    with create_llm_client(fake.config(provider=provider, key=f"stream-json-{provider}")) as llm:
        with llm.stream(HELLO, response_format=City) as stream:
            text = "".join(stream)
        plain = llm.stream(HELLO)
        "".join(plain)
    assert stream.parsed == City("text", 1, ["text"]) and text.startswith("{")
    assert plain.parsed is None


def test_a_streamed_answer_that_does_not_match_raises_when_parsed():
    llm = MockLlm(["not json"])
    with llm.stream(HELLO, response_format=City) as stream:
        assert "".join(stream) == "not json"
    with pytest.raises(InvalidResponseError) as caught:
        _ = stream.parsed
    assert caught.value.raw_text == "not json"


def make_city_class():
    @dataclasses.dataclass
    class City:  # the same name and fields as the module's City: the same request body
        name: str
        population: int
        districts: List[str]

    return City


def test_two_dataclass_formats_sent_alike_do_not_share_a_cache_entry(fake):
    config = fake.config(cache=CacheConfig(backend="memory"), key="cache-targets")
    other = make_city_class()
    with create_llm_client(config) as llm:
        first = llm.chat(HELLO, response_format=City)
        second = llm.chat(HELLO, response_format=other)
    assert fake.chat_requests[0].body == fake.chat_requests[1].body
    assert not second.cached and isinstance(first.parsed, City) and isinstance(second.parsed, other)
