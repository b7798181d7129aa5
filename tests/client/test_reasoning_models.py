"""OpenAI's reasoning models refuse ``max_tokens``: the client resends once with
``max_completion_tokens`` (through the limiter, counted as a retry, not a failure) and
remembers that for the model. Measured at FakeLlmServer, which answers as OpenAI does."""

import threading

import pytest

from cowork_llm import create_llm_client
from cowork_llm.errors import BadRequestError, TokenFieldRejectedError
from cowork_llm.providers.openai import OpenAIClient
from cowork_llm.testing import FakeLlmServer

HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def server():
    with FakeLlmServer() as fake:
        yield fake


def token_fields(requests):
    return [("max_tokens" in r.body, r.body.get("max_completion_tokens")) for r in requests]


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_refused_max_tokens_is_resent_once_and_remembered(server, max_attempts):
    config = server.config(model_name="o3-mini", max_tokens=50, max_attempts=max_attempts,
                           key=f"o3-{max_attempts}")
    with create_llm_client(config) as llm:
        first = llm.chat(HELLO)
        second = llm.chat(HELLO)
        usage = llm.usage().total
    assert first.content == second.content == "echo: Hello there"
    # The first call: max_tokens refused with OpenAI's 400, resent with the other field;
    # every later call uses that field at once.
    assert token_fields(server.chat_requests) == [(True, None), (False, 50), (False, 50)]
    assert usage.requests == 2 and usage.failures == 0 and usage.retries == 1
    assert usage.http_attempts == 3


def test_the_resend_takes_its_own_limiter_slot(server):
    config = server.config(model_name="gpt-5-mini", max_tokens=20, min_interval_seconds=0.5, key="gpt5-gap")
    with create_llm_client(config) as llm:
        llm.chat(HELLO)
    gaps = server.arrival_gaps()
    # The limiter spaced the resend like any request (sent at once, it would arrive within
    # milliseconds); the margin is for arrival jitter on a loaded machine.
    assert len(gaps) == 1 and gaps[0] >= 0.4


def test_a_stream_is_resent_too(server):
    with create_llm_client(server.config(model_name="o4-mini", max_tokens=30, key="o4-stream")) as llm:
        with llm.stream(HELLO) as stream:
            assert "".join(stream) == "echo: Hello there"
    assert token_fields(server.chat_requests) == [(True, None), (False, 30)]


def test_the_provider_alone_raises_and_remembers(server):
    with OpenAIClient(server.config(model_name="o1", max_tokens=10).model) as llm:
        with pytest.raises(TokenFieldRejectedError) as caught:
            llm.chat(HELLO)
        assert caught.value.status_code == 400 and caught.value.retry_after == 0.0
        assert "max_completion_tokens" in str(caught.value)
        assert llm.token_field() == "max_completion_tokens"
        assert llm.chat(HELLO).content == "echo: Hello there"


def test_a_model_that_takes_max_tokens_is_not_affected(server):
    with create_llm_client(server.config(model_name="gpt-4o-mini", max_tokens=10, key="plain")) as llm:
        llm.chat(HELLO)
    assert token_fields(server.chat_requests) == [(True, None)]


def test_an_unsupported_temperature_stays_an_error_with_the_providers_message(server):
    with create_llm_client(server.config(model_name="o3", temperature=0.2, key="o3-temp")) as llm:
        with pytest.raises(BadRequestError, match="'temperature' does not support 0.2") as caught:
            llm.chat(HELLO)
    assert caught.value.attempts == 1 and server.request_count == 1


def test_many_threads_meeting_a_reasoning_model_at_once(server):
    """The remembered field is shared by every thread: each call ends well, at most one
    resend each, and once any answer came back nobody sends max_tokens again."""
    config = server.config(model_name="o3-mini", max_tokens=40, max_concurrent=16, key="o3-threads")
    errors, results = [], []
    with create_llm_client(config) as llm:
        barrier = threading.Barrier(16)

        def worker():
            try:
                barrier.wait(5)
                for _ in range(3):
                    results.append(llm.chat(HELLO).content)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        usage = llm.usage().total
        assert llm.chat(HELLO).content == "echo: Hello there"
    assert errors == [] and len(results) == 48
    refused = sum(1 for has_max_tokens, _ in token_fields(server.chat_requests) if has_max_tokens)
    assert 1 <= refused <= 16  # only requests built before the first refusal came back
    assert usage.retries == refused and usage.failures == 0
    assert "max_tokens" not in server.chat_requests[-1].body
