"""AnthropicClient: request shape, answer parsing, status mapping, secrets; and the
whole stack (create_llm_client) against FakeLlmServer's /v1/messages."""

import json
import logging

import pytest
import requests
import responses

from cowork_llm import create_llm_client
from cowork_llm.config import ModelConfig
from cowork_llm.errors import (
    ApiConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from cowork_llm.providers import build_provider
from cowork_llm.providers.anthropic import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS, AnthropicClient
from cowork_llm.results import Usage
from cowork_llm.testing import FakeLlmServer

KEY = "sk-ant-test-0123456789SECRET"
BASE = "https://api.anthropic.example/v1"
URL = BASE + "/messages"
MESSAGES = [{"role": "system", "content": "Be brief"}, {"role": "system", "content": "Use English"},
            {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": "How are you?"}]


def make_config(**overrides):
    fields = {"base_url": BASE, "api_key": KEY, "model_name": "claude-test", "provider": "anthropic"}
    fields.update(overrides)
    return ModelConfig(**fields)


def message(content=None, stop_reason="end_turn", **extra):
    blocks = [{"type": "text", "text": "Fine, "}, {"type": "tool_use", "id": "t", "name": "x", "input": {}},
              {"type": "text", "text": "thanks."}] if content is None else content
    body = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test-2025",
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 21, "output_tokens": 5}}
    body.update(extra)
    return body


def error_body(kind, text):
    return {"type": "error", "error": {"type": kind, "message": text}}


@pytest.fixture
def mock():
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def client():
    with AnthropicClient(make_config()) as llm:
        yield llm


def test_request_shape_and_headers(mock, client):
    mock.post(URL, json=message())
    client.chat(MESSAGES)
    request = mock.calls[0].request
    # As the current official SDK sends them (anthropic 2.15: Bearer, version 2026-10-21).
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION == "2026-10-21"
    assert request.headers["Content-Type"] == "application/json"
    assert "x-api-key" not in request.headers
    body = json.loads(request.body)
    assert body == {
        "model": "claude-test",
        "system": "Be brief\n\nUse English",
        "messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
                     {"role": "user", "content": "How are you?"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert DEFAULT_MAX_TOKENS == 1024


def test_options_from_the_call_then_the_config(mock):
    mock.post(URL, json=message())
    with AnthropicClient(make_config(max_tokens=77, stop=["END"])) as llm:
        llm.chat([{"role": "user", "content": "x"}])
        llm.chat([{"role": "user", "content": "x"}], max_tokens=5, stop=["a", "b"])
    first, second = (json.loads(c.request.body) for c in mock.calls)
    assert (first["max_tokens"], first["stop_sequences"]) == (77, ["END"]) and "system" not in first
    assert (second["max_tokens"], second["stop_sequences"]) == (5, ["a", "b"])


def test_answer_parsing(mock, client):
    mock.post(URL, json=message(), headers={"request-id": "req_011abc"})
    result = client.chat(MESSAGES)
    assert result.content == "Fine, thanks."
    assert result.usage == Usage(21, 5, 26)
    assert result.finish_reason == "end_turn"
    assert result.model == "claude-test-2025"
    assert result.request_id == "req_011abc"
    assert client.name == "anthropic:claude-test"


def test_request_id_falls_back_to_the_message_id_and_usage_may_be_missing(mock, client):
    mock.post(URL, json=message(usage=None))
    result = client.chat(MESSAGES)
    assert result.request_id == "msg_01" and result.usage is None


def test_empty_text_is_fine_only_when_the_stop_reason_explains_it(mock, client):
    mock.post(URL, json=message(content=[], stop_reason="max_tokens"))
    assert client.chat(MESSAGES).content == ""
    mock.replace(responses.POST, URL, json=message(content=[], stop_reason="end_turn"))
    with pytest.raises(InvalidResponseError, match="no text block"):
        client.chat(MESSAGES)
    mock.replace(responses.POST, URL, json=message(content=[], stop_reason="refusal"))
    with pytest.raises(InvalidResponseError, match="refused"):
        client.chat(MESSAGES)


@pytest.mark.parametrize("body", ["<html>oops</html>", json.dumps({"type": "message"})])
def test_unusable_answers(mock, client, body):
    mock.post(URL, body=body, content_type="application/json")
    with pytest.raises(InvalidResponseError):
        client.chat(MESSAGES)


@pytest.mark.parametrize("status, kind, error", [
    (400, "invalid_request_error", BadRequestError),
    (401, "authentication_error", AuthenticationError),
    (403, "permission_error", AuthenticationError),
    (404, "not_found_error", NotFoundError),
    (413, "request_too_large", BadRequestError),
    (500, "api_error", ServerError),
    (529, "overloaded_error", ServerError),
])
def test_error_statuses_are_mapped_with_the_provider_message(mock, client, status, kind, error):
    mock.post(URL, json=error_body(kind, f"the {kind} message"), status=status,
              headers={"request-id": "req_err"})
    with pytest.raises(error) as info:
        client.chat(MESSAGES)
    assert info.value.status_code == status and info.value.request_id == "req_err"
    assert f"the {kind} message" in str(info.value)


def test_429_is_a_rate_limit_error_with_retry_after(mock, client):
    mock.post(URL, json=error_body("rate_limit_error", "slow down"), status=429, headers={"retry-after": "7"})
    with pytest.raises(RateLimitError) as info:
        client.chat(MESSAGES)
    assert info.value.retry_after == 7.0


def test_connection_failure(mock, client):
    mock.post(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ApiConnectionError, match="anthropic"):
        client.chat(MESSAGES)


def test_the_key_never_shows(mock, client, caplog):
    mock.post(URL, json=error_body("authentication_error", f"invalid x-api-key {KEY}"), status=401)
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"), pytest.raises(AuthenticationError) as info:
        client.chat(MESSAGES)
    shown = [str(info.value), repr(info.value), repr(client), str(client.config), caplog.text]
    assert "invalid x-api-key" in str(info.value)
    assert not any(KEY in text for text in shown)


@pytest.mark.parametrize("messages, options", [
    ([{"role": "system", "content": "only a system prompt"}], {}),
    ([{"role": "user", "content": "x"}], {"temperature": 1.5}),
    ([{"role": "user", "content": "x"}], {"max_tokens": 0}),
    ([{"role": "tool", "content": "x"}], {}),
])
def test_bad_input_fails_before_any_request(mock, client, messages, options):
    with pytest.raises(ValueError):
        client.chat(messages, **options)
    assert len(mock.calls) == 0


@pytest.mark.parametrize("field, value", [("temperature", 0.5), ("top_p", 0.9), ("seed", 7)])
def test_a_configured_option_the_api_lacks_is_refused_naming_the_key(field, value):
    # The current SDK's MessageCreateParams has no temperature, top_p or seed.
    with pytest.raises(ConfigError, match=rf"llm\.model\.{field}: .*anthropic"):
        AnthropicClient(make_config(**{field: value}))


def test_plain_http_to_a_remote_host_is_refused():
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        AnthropicClient(make_config(base_url="http://claude.example.com/v1"))


def test_registry_builds_it():
    with build_provider(make_config()) as llm:
        assert isinstance(llm, AnthropicClient)


# --- the whole stack against FakeLlmServer ------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeLlmServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    return server


def test_fake_server_happy_path(fake):
    with create_llm_client(fake.config(provider="anthropic")) as llm:
        result = llm.chat(MESSAGES)
        assert llm.generate_content("ping", system_prompt="terse") == "echo: ping"
    assert result.content == "echo: How are you?"
    assert result.finish_reason == "end_turn" and result.usage is not None
    assert result.request_id and result.request_id.startswith("req_fake")
    recorded = fake.chat_requests[0]
    assert recorded.path == "/v1/messages" and recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.body["system"] == "Be brief\n\nUse English" and recorded.body["max_tokens"] == 1024


@pytest.mark.parametrize("status", [529, 500])
def test_fake_server_overloaded_then_ok_is_retried(fake, status):
    fake.fail_next(status=status)
    with create_llm_client(fake.config(provider="anthropic")) as llm:
        assert llm.generate_content("again") == "echo: again"
    assert len(fake.chat_requests) == 2


def test_fake_server_429_with_retry_after_is_retried(fake):
    fake.fail_next(status=429, retry_after=0.05)
    with create_llm_client(fake.config(provider="anthropic")) as llm:
        assert llm.generate_content("later") == "echo: later"
    assert len(fake.chat_requests) == 2


@pytest.mark.parametrize("status, error", [(400, BadRequestError), (401, AuthenticationError),
                                           (404, NotFoundError)])
def test_fake_server_errors_are_not_retried(fake, status, error):
    fake.fail_next(status=status)
    with create_llm_client(fake.config(provider="anthropic")) as llm, pytest.raises(error) as info:
        llm.generate_content("x")
    assert info.value.attempts == 1 and len(fake.chat_requests) == 1


def test_fake_server_wrong_key(fake):
    config = fake.config(provider="anthropic", api_key="sk-ant-wrong-000000000000")
    with create_llm_client(config) as llm, pytest.raises(AuthenticationError, match="x-api-key"):
        llm.generate_content("x")


def test_fake_server_empty_content_is_invalid(fake):
    fake.empty_choices_next()
    with create_llm_client(fake.config(provider="anthropic")) as llm, pytest.raises(InvalidResponseError):
        llm.generate_content("x")
