"""API-key rotation: KeyRotation on its own and under many threads, and both providers
rotating on 429 and dropping a key on 401 (responses, and the whole stack against
FakeLlmServer)."""

import logging
import threading

import pytest
import responses

from cowork_llm import create_llm_client
from cowork_llm.config import ModelConfig, RetryConfig
from cowork_llm.errors import AuthenticationError, KeyRejectedError, RateLimitError
from cowork_llm.providers import build_provider
from cowork_llm.providers._keys import KeyRotation
from cowork_llm.retry import RetryPolicy, is_retryable
from cowork_llm.testing import FakeLlmServer

K1, K2, K3 = "sk-key-one-0000000000AAAA", "sk-key-two-1111111111BBBB", "sk-key-three-22222222CCCC"
BASE = "https://api.example.com/v1"
URLS = {"openai": BASE + "/chat/completions", "anthropic": BASE + "/messages"}
MESSAGES = [{"role": "user", "content": "hi"}]
OK = {
    "openai": {"choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"}}]},
    "anthropic": {"type": "message", "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
}


def sent_key(request):
    return request.headers.get("x-api-key") or request.headers["Authorization"].removeprefix("Bearer ")


def make_config(provider="openai", keys=(K1, K2, K3)):
    return ModelConfig(base_url=BASE, api_key=keys[0], extra_api_keys=tuple(keys[1:]),
                       model_name="m", provider=provider)


# --- KeyRotation ------------------------------------------------------------------------------


def test_rate_limited_key_moves_the_rotation_on_and_wraps_around():
    keys = KeyRotation([K1, K2, K3])
    assert keys.current() == K1
    keys.on_rate_limited(K1)
    assert keys.current() == K2
    keys.on_rate_limited(K1)  # an old report about a key already left behind: no move
    assert keys.current() == K2
    keys.on_rate_limited(K2)
    keys.on_rate_limited(K3)
    assert keys.current() == K1


def test_a_single_key_stays_on_429():
    keys = KeyRotation([K1])
    keys.on_rate_limited(K1)
    assert keys.current() == K1


def test_unauthorized_key_leaves_for_good_with_a_masked_warning(caplog):
    keys = KeyRotation([K1, K2, K3])
    keys.on_rate_limited(K1)  # current is K2
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        assert keys.on_unauthorized(K1) is True
    assert keys.current() == K2 and len(keys) == 2
    assert "'sk-…AAAA'" in caplog.text and K1 not in caplog.text
    assert keys.on_unauthorized(K2) is True and keys.current() == K3
    for _ in range(3):
        keys.on_rate_limited(K3)
        assert keys.current() == K3  # never back to a removed key
    # The last key stays: nothing is left to rotate to, and each call tries it again.
    assert keys.on_unauthorized(K3) is False
    assert keys.current() == K3 and len(keys) == 1
    assert keys.secrets == (K1, K2, K3)
    assert not any(k in repr(keys) for k in (K1, K2, K3))


def test_removing_a_key_before_the_current_one_keeps_the_current_one():
    keys = KeyRotation([K1, K2, K3])
    keys.on_rate_limited(K1)
    keys.on_rate_limited(K2)  # current K3
    keys.on_unauthorized(K1)
    assert keys.current() == K3


def test_empty_rotation_is_refused():
    with pytest.raises(ValueError):
        KeyRotation([])
    with pytest.raises(ValueError) as info:
        KeyRotation([K1, ""], label="llm.fallback[1]")
    assert str(info.value) == "llm.fallback[1]: a key rotation needs at least one non-empty key"


def test_many_threads_reporting_the_same_429_move_the_rotation_once():
    keys = KeyRotation([K1, K2, K3])
    barrier = threading.Barrier(32)

    def report():
        barrier.wait()
        for _ in range(200):
            keys.on_rate_limited(K1)

    threads = [threading.Thread(target=report) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert keys.current() == K2


def test_many_threads_hammering_rotation_and_removal_stay_consistent():
    keys = KeyRotation([f"sk-hammer-key-{i:04d}-XXXX" for i in range(20)])
    barrier = threading.Barrier(16)
    errors = []

    def work(n):
        barrier.wait()
        try:
            for i in range(300):
                key = keys.current()
                if i % 7 == n % 7:
                    keys.on_unauthorized(key)
                else:
                    keys.on_rate_limited(key)
        except AuthenticationError:
            pass  # every key gone: the documented end
        except Exception as exc:  # an IndexError would mean a broken index
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(keys) == 1  # the last key is never removed
    assert keys.current() in keys.secrets


def test_the_retry_policy_retries_a_rejected_key_only_while_another_remains():
    assert is_retryable(KeyRejectedError("401", status_code=401, retry_after=0.0))
    assert not is_retryable(AuthenticationError("401", status_code=401))


# --- providers, against responses ----------------------------------------------------------------


@pytest.fixture
def mock():
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_429_switches_to_the_next_key_for_later_attempts(mock, provider):
    mock.post(URLS[provider], json={"error": {"message": "slow"}}, status=429)
    mock.post(URLS[provider], json=OK[provider])
    with build_provider(make_config(provider)) as llm:
        with pytest.raises(RateLimitError):
            llm.chat(MESSAGES)
        assert llm.chat(MESSAGES).content == "ok"
    assert [sent_key(c.request) for c in mock.calls] == [K1, K2]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_401_drops_the_key_and_the_retry_policy_succeeds_with_the_next(mock, provider, caplog):
    mock.post(URLS[provider], json={"error": {"message": "bad key"}}, status=401)
    mock.post(URLS[provider], json=OK[provider])
    sleeps = []
    policy = RetryPolicy(RetryConfig(max_attempts=3), sleep=sleeps.append)
    with build_provider(make_config(provider)) as llm, caplog.at_level(logging.WARNING, logger="cowork_llm"):
        result = policy.call(lambda: llm.chat(MESSAGES), model=llm.name, prompt_hash="h")
        assert result.content == "ok" and sleeps == [0.0]
        llm.chat(MESSAGES)
    assert [sent_key(c.request) for c in mock.calls] == [K1, K2, K2]
    assert "rejected (HTTP 401)" in caplog.text
    assert not any(k in caplog.text for k in (K1, K2, K3))


def test_401_on_the_last_key_is_a_plain_authentication_error(mock):
    mock.post(URLS["openai"], json={"error": {"message": "bad key"}}, status=401)
    with build_provider(make_config(keys=(K1, K2))) as llm:
        with pytest.raises(KeyRejectedError):
            llm.chat(MESSAGES)
        with pytest.raises(AuthenticationError) as info:
            llm.chat(MESSAGES)
        assert type(info.value) is AuthenticationError and info.value.status_code == 401
        with pytest.raises(AuthenticationError, match="bad key"):
            llm.chat(MESSAGES)
    assert len(mock.calls) == 3  # the last key stays: each call tries it


def test_a_401_with_a_single_key_does_not_poison_later_calls(mock):
    mock.post(URLS["openai"], json={"error": {"message": "bad key"}}, status=401)
    mock.post(URLS["openai"], json=OK["openai"])
    with build_provider(make_config(keys=(K1,))) as llm:
        with pytest.raises(AuthenticationError) as info:
            llm.chat(MESSAGES)
        assert type(info.value) is AuthenticationError
        assert llm.chat(MESSAGES).content == "ok"  # a passing 401 (e.g. a proxy restarting) is forgotten
    assert len(mock.calls) == 2


def test_403_does_not_remove_the_key(mock):
    mock.post(URLS["openai"], json={"error": {"message": "region"}}, status=403)
    with build_provider(make_config()) as llm:
        for _ in range(2):
            with pytest.raises(AuthenticationError) as info:
                llm.chat(MESSAGES)
            assert type(info.value) is AuthenticationError
    assert [sent_key(c.request) for c in mock.calls] == [K1, K1]


# --- the whole stack against FakeLlmServer --------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fake_server_accepts_only_the_second_key(provider):
    with FakeLlmServer(api_key=K2) as server:
        config = server.config(provider=provider, api_key=K1, extra_api_keys=(K2,), max_attempts=2)
        with create_llm_client(config) as llm:
            assert llm.generate_content("x") == "echo: x"
            assert llm.generate_content("y") == "echo: y"
        keys = [r.headers.get("x-api-key") or r.headers["authorization"][7:] for r in server.chat_requests]
    assert keys == [K1, K2, K2]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fake_server_stream_with_a_rejected_key_raises_before_the_first_piece(provider):
    with FakeLlmServer(api_key=K2) as server:
        model = server.config(provider=provider, api_key=K1, extra_api_keys=(K2,)).model
        with build_provider(model) as llm:
            with pytest.raises(KeyRejectedError):
                llm.stream(MESSAGES)
            assert "".join(llm.stream(MESSAGES)) == "echo: hi"


def test_fake_server_429_rotates_the_key_for_the_retry():
    with FakeLlmServer(api_key=(K1, K2)) as server:
        server.fail_next(status=429, retry_after=0.01)
        config = server.config(api_key=K1, extra_api_keys=(K2,))
        with create_llm_client(config) as llm:
            assert llm.generate_content("x") == "echo: x"
        keys = [r.headers["authorization"][7:] for r in server.chat_requests]
    assert keys == [K1, K2]


# --- found by mutation testing (TESTING.md) -------------------------------------------------


def test_a_rejected_key_error_keeps_the_providers_message_status_and_request_id(mock):
    mock.post(URLS["openai"], json={"error": {"message": "bad key"}}, status=401,
              headers={"x-request-id": "req_401"})
    with build_provider(make_config(keys=(K1, K2))) as llm:
        with pytest.raises(KeyRejectedError) as info:
            llm.chat(MESSAGES)
    error = info.value
    assert error.message == "openai answered HTTP 401: bad key; retrying with the next API key"
    assert error.status_code == 401 and error.request_id == "req_401" and error.retry_after == 0.0


def test_health_checks_the_key_the_next_request_would_send(mock):
    mock.post(URLS["openai"], json={"error": {"message": "slow"}}, status=429)
    mock.get(BASE + "/models", json={"object": "list", "data": []})
    with build_provider(make_config()) as llm:
        with pytest.raises(RateLimitError):
            llm.chat(MESSAGES)  # the rotation moves on to K2
        assert llm.health().ok
    assert [sent_key(c.request) for c in mock.calls] == [K1, K2]


def test_a_rotation_shows_its_keys_masked_in_its_repr():
    keys = KeyRotation([K1, K2], label="llm.fallback[0]")
    keys.on_rate_limited(K1)
    assert repr(keys) == "KeyRotation(llm.fallback[0]: ['sk-…AAAA', 'sk-…BBBB'], current=1)"


def test_a_dropped_key_is_logged_with_its_section_and_the_keys_left(caplog):
    keys = KeyRotation([K1, K2, K3], label="llm.fallback[0]")
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        keys.on_unauthorized(K1)
    assert [r.getMessage() for r in caplog.records] == [
        "llm.fallback[0]: API key 'sk-…AAAA' was rejected (HTTP 401) and is no longer used; "
        "2 key(s) left"]


def test_only_the_headers_that_carry_the_key_are_masked_in_a_traceback(mock):
    # An error reporter that records locals shows the request's headers by repr: the key
    # masked, the other headers as they are (they help to debug the call).
    mock.post(URLS["anthropic"], json=OK["anthropic"])
    with build_provider(make_config("anthropic")) as llm:
        llm.chat(MESSAGES)
    headers = mock.calls[0].request.headers
    name = "x-api-key" if "x-api-key" in headers else "Authorization"
    assert K1 in headers[name] and K1[:-4] not in repr(headers[name])
    assert repr(headers["anthropic-version"]) == repr(str(headers["anthropic-version"]))
