"""Our client against llama.cpp's own OpenAI-compatible server (a server nobody here
wrote), through the public API: ``create_llm_client(config)``.

Gemma 3 270M is a base model: these tests assert on structure, never on wording.
The server quirks pinned in ``test_wire_format_*`` are the ones docs/llamacpp-notes.md
tells the provider and FakeLlmServer to mirror; if an xllamacpp upgrade changes one,
the test fails and the notes must change with it.
"""

import json
import threading
from typing import Any, Iterator, List

import pytest
import requests

from cowork_llm import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitConfig,
    RetryConfig,
    create_llm_client,
)
from cowork_llm.llm import Llm

from .arrival_proxy import ArrivalProxy

pytestmark = pytest.mark.realserver

HELLO = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]
# One retry at most, quickly: a test that fails should fail fast, not after 5 attempts.
FAST_RETRY = RetryConfig(max_attempts=2, initial_wait_seconds=0.1, max_wait_seconds=0.5,
                         total_timeout_seconds=30.0)


@pytest.fixture
def server(llamacpp_server: Any) -> Any:
    return llamacpp_server


@pytest.fixture
def llm(server: Any) -> Iterator[Llm]:
    # max_tokens 8 by default: a base model's words are not worth waiting for.
    client = create_llm_client(server.config(max_tokens=8, retry=FAST_RETRY))
    yield client
    client.close()


# --- through the client -----------------------------------------------------------------


def test_chat_returns_text_usage_and_the_servers_model_name(llm: Llm, server: Any) -> None:
    result = llm.chat(HELLO, max_tokens=8)

    assert result.content.strip()
    assert result.usage is not None
    assert result.usage.prompt_tokens > 0
    assert 1 <= result.usage.completion_tokens <= 8
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.finish_reason in ("stop", "length")
    assert result.model == server.model_name  # the alias the server was started with
    # No x-request-id header: the id comes from the body's "id".
    assert result.request_id is not None and result.request_id.startswith("chatcmpl-")


def test_generate_content_returns_a_non_empty_string(llm: Llm) -> None:
    text = llm.generate_content("Name a colour.", system_prompt="Answer in one word.")
    assert isinstance(text, str) and text.strip()


def test_max_tokens_one_stops_with_length_after_one_token(llm: Llm) -> None:
    result = llm.chat(HELLO, max_tokens=1)
    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 1
    assert result.content  # one token of text


def test_wrong_key_is_an_authentication_error_without_the_key(server: Any) -> None:
    wrong_key = "sk-wrong-0123456789abcdef"
    with create_llm_client(server.config(api_key=wrong_key, retry=FAST_RETRY)) as llm:
        with pytest.raises(AuthenticationError) as caught:
            llm.chat(HELLO, max_tokens=4)

    error = caught.value
    assert error.status_code == 401
    assert error.attempts == 1  # never retried
    assert "Invalid API Key" in error.message
    for text in (str(error), repr(error)):
        assert wrong_key not in text and server.api_key not in text


def test_prompt_longer_than_the_context_is_a_bad_request(llm: Llm, server: Any) -> None:
    # Something our client sends (it validates roles, content, temperature and
    # max_tokens itself) and the server refuses: a prompt beyond n_ctx tokens.
    too_long = "word " * (server.n_ctx + 500)
    with pytest.raises(BadRequestError) as caught:
        llm.chat([{"role": "user", "content": too_long}], max_tokens=4)

    assert caught.value.status_code == 400
    assert caught.value.attempts == 1  # never retried
    assert "context size" in caught.value.message


def test_wrong_base_url_path_is_not_found(server: Any) -> None:
    config = server.config(base_url=server.root_url + "/v2", retry=FAST_RETRY)
    with create_llm_client(config) as llm:
        with pytest.raises(NotFoundError) as caught:
            llm.chat(HELLO, max_tokens=4)
    assert caught.value.status_code == 404


def test_two_threads_sharing_the_client_respect_the_interval_at_the_server(server: Any) -> None:
    interval = 1.0
    calls_per_thread = 2
    with ArrivalProxy(int(server.root_url.rsplit(":", 1)[1])) as proxy:
        config = server.config(
            base_url=f"http://127.0.0.1:{proxy.port}/v1",
            rate_limit=RateLimitConfig(key="realserver-interval", min_interval_seconds=interval),
            retry=FAST_RETRY,
        )
        llm = create_llm_client(config)
        results: List[str] = []
        errors: List[BaseException] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            for i in range(calls_per_thread):
                try:
                    text = llm.chat([{"role": "user", "content": f"Count to {n + i}."}], max_tokens=4).content
                    with lock:
                        results.append(text)
                except BaseException as exc:  # reported below, not lost in the thread
                    with lock:
                        errors.append(exc)

        with llm:
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        arrivals = [t for t, line in proxy.arrivals if line.startswith("POST ")]

    assert not errors, errors
    assert len(results) == 2 * calls_per_thread and all(results)
    assert len(arrivals) == 2 * calls_per_thread  # one request per call: nothing retried
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    # pyrate-limiter can stamp a slot a few ms early; 50 ms covers that, not a real bug.
    assert min(gaps) >= interval - 0.05, gaps


def test_provider_streams_pieces_usage_and_errors_from_the_real_server(server: Any) -> None:
    from cowork_llm.providers.openai import OpenAIClient

    provider = OpenAIClient(server.config().model)
    try:
        stream = provider.stream(HELLO, max_tokens=8)
        pieces = list(stream)
        assert len(pieces) >= 2, pieces  # one SSE event per token
        assert all(isinstance(p, str) and p for p in pieces), pieces  # the null first delta is dropped
        usage = getattr(stream, "usage", None)
        assert usage is not None and 1 <= usage.completion_tokens <= 8  # from the choices: [] event
        assert len(pieces) <= usage.completion_tokens
        assert getattr(stream, "finish_reason", None) in ("stop", "length")

        # Errors before the first event are plain JSON, not SSE: mapped like chat's.
        with pytest.raises(BadRequestError):
            list(provider.stream([{"role": "user", "content": "word " * (server.n_ctx + 500)}], max_tokens=2))

        # Abandoned after one piece: the server frees its only slot for the next request.
        abandoned = provider.stream(HELLO, max_tokens=500)
        assert next(iter(abandoned))
        abandoned.close()  # type: ignore[attr-defined]
        assert provider.chat(HELLO, max_tokens=2).content
    finally:
        provider.close()


def test_public_client_stream_yields_pieces_and_frees_the_slot_when_abandoned(server: Any) -> None:
    config = server.config(
        rate_limit=RateLimitConfig(key="realserver-stream", min_interval_seconds=0.0,
                                   acquire_timeout_seconds=10.0),
        retry=FAST_RETRY,
    )
    with create_llm_client(config) as llm:
        limiter = llm.limiter  # type: ignore[attr-defined]
        stream = llm.stream(HELLO, max_tokens=8)
        assert limiter.in_flight == 1  # held while the answer arrives
        pieces = list(stream)
        assert limiter.in_flight == 0
        assert len(pieces) >= 2, pieces
        assert all(isinstance(p, str) and p for p in pieces), pieces
        assert "".join(pieces).strip()
        totals = llm.usage().total  # type: ignore[attr-defined]
        assert totals.requests == 1 and 1 <= totals.completion_tokens <= 8  # from the final event

        # Stop after the first piece, by close() and by dropping the stream: the limiter
        # slot must come back each time, or the next call would time out waiting for it.
        stream = llm.stream(HELLO, max_tokens=64)
        assert next(iter(stream))
        stream.close()  # type: ignore[attr-defined]
        assert limiter.in_flight == 0
        assert next(iter(llm.stream(HELLO, max_tokens=64)))  # dropped at once, still open
        assert limiter.in_flight == 0
        assert llm.chat(HELLO, max_tokens=2).content


# --- the wire format the notes describe (plain requests, no client) ---------------------


def _post(server: Any, body: Any, key: str = "", **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    return requests.post(server.base_url + "/chat/completions", json=body, headers=headers,
                         timeout=30, **kwargs)


def test_wire_format_of_answers_and_errors(server: Any) -> None:
    ok = _post(server, {"messages": HELLO, "temperature": 0, "max_tokens": 2})
    body = ok.json()
    assert ok.headers["Content-Type"].startswith("application/json")
    assert "x-request-id" not in ok.headers
    assert body["model"] == server.model_name and body["id"].startswith("chatcmpl-")
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert "timings" in body  # llama.cpp's own extension
    assert "logprobs" not in body["choices"][0] and "refusal" not in body["choices"][0]["message"]

    unauthorized = _post(server, {"messages": HELLO}, key="sk-wrong-key-000000")
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {"error": {"message": "Invalid API Key",
                                             "type": "authentication_error", "code": 401}}
    models = requests.get(server.base_url + "/models", timeout=10)
    assert models.status_code == 401  # even the model list needs the key
    assert requests.get(server.root_url + "/health", timeout=10).json() == {"status": "ok"}

    missing = _post(server, {"model": "x"})
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    too_long = _post(server, {"messages": [{"role": "user", "content": "word " * 3000}]})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["type"] == "exceed_context_size_error"

    wrong_path = server.root_url + "/v2/chat/completions"
    not_found = requests.post(wrong_path, json={}, headers={"Authorization": f"Bearer {server.api_key}"},
                              timeout=10)
    assert not_found.status_code == 404
    assert not_found.json() == {"error": {"message": "File Not Found", "type": "not_found_error",
                                          "code": 404}}
    # The key is checked before the path: a wrong path with a wrong key is a 401.
    assert requests.post(wrong_path, json={}, timeout=10).status_code == 401


def test_wire_format_of_a_stream_with_usage(server: Any) -> None:
    response = _post(server, {"messages": HELLO, "temperature": 0, "max_tokens": 3, "stream": True,
                              "stream_options": {"include_usage": True}}, stream=True)
    assert response.headers["Content-Type"] == "text/event-stream"
    lines = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert all(line.startswith("data: ") for line in lines), lines  # no event:/id: lines
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    first, *middle, finish, usage = events
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert all(isinstance(e["choices"][0]["delta"]["content"], str) for e in middle)
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {}
    assert "usage" not in finish
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
