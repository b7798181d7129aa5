"""The fallback chain: FallbackLlm's failover decisions over MockLlm, and the whole stack
(create_llm_client with [[llm.fallback]]) against two FakeLlmServers and a closed port."""

import logging
import socket
import threading

import pytest

from cowork_llm import create_llm_client
from cowork_llm.client import FallbackLlm
from cowork_llm.client._fallback import fails_over, fallback_limit_key
from cowork_llm.config import LlmConfig, RetryConfig
from cowork_llm.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    LimiterAcquireError,
    MissingApiKeyError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.rate_limiter import get_global_rate_limiter
from cowork_llm.streaming import ChatStream
from cowork_llm.testing import FakeLlmServer, MockLlm

HELLO = [{"role": "user", "content": "one two three"}]
PRIMARY_KEY, BACKUP_KEY = "sk-primary-0000000000001", "sk-backup-00000000000002"


# --- the decision, over MockLlm -------------------------------------------------------------------


@pytest.mark.parametrize("error", [
    ServerError("x", status_code=500), ApiConnectionError("x"), ApiTimeoutError("x"),
    AuthenticationError("x", status_code=401), NotFoundError("x", status_code=404),
    RateLimitError("x", status_code=429), QuotaExceededError("x", status_code=429),
    InvalidResponseError("x"),
])
def test_final_api_errors_fail_over(error):
    primary, backup = MockLlm([error], model="primary"), MockLlm(["from backup"], model="backup")
    result = FallbackLlm([primary, backup]).chat(HELLO)
    assert (result.content, result.model) == ("from backup", "backup")
    assert len(primary.calls) == len(backup.calls) == 1


@pytest.mark.parametrize("error", [BadRequestError("x", status_code=400), LimiterAcquireError("no slot")])
def test_bad_requests_and_limiter_timeouts_do_not_fail_over(error):
    primary, backup = MockLlm([error]), MockLlm(["unused"])
    with pytest.raises(type(error)):
        FallbackLlm([primary, backup]).chat(HELLO)
    assert backup.calls == []
    assert not fails_over(error)


def test_bad_messages_fail_before_any_model_is_asked():
    primary, backup = MockLlm(["unused"]), MockLlm(["unused"])
    with pytest.raises(ValueError, match="messages"):
        FallbackLlm([primary, backup]).chat([{"role": "user", "content": " "}])
    assert primary.calls == backup.calls == []


def test_the_last_models_error_is_raised_when_all_fail():
    chain = FallbackLlm([MockLlm([ServerError("a", status_code=500)]),
                         MockLlm([NotFoundError("b", status_code=404)]),
                         MockLlm([ApiConnectionError("c")])])
    with pytest.raises(ApiConnectionError, match="c"):
        chain.chat(HELLO)


def test_a_400_from_a_fallback_stops_the_chain():
    third = MockLlm(["unused"])
    chain = FallbackLlm([MockLlm([ServerError("a", status_code=503)]),
                         MockLlm([BadRequestError("too long", status_code=400)]), third])
    with pytest.raises(BadRequestError):
        chain.chat(HELLO)
    assert third.calls == []


def test_each_failover_is_one_warning_naming_the_models(caplog):
    chain = FallbackLlm([MockLlm([ServerError("a", status_code=502)], model="alpha"),
                         MockLlm([AuthenticationError("b", status_code=401)], model="beta"),
                         MockLlm(["ok"], model="gamma")])
    with caplog.at_level(logging.WARNING, logger="cowork_llm.client._fallback"):
        assert chain.chat(HELLO).model == "gamma"
    lines = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.client._fallback"]
    assert lines == [
        "mock:alpha failed (ServerError 502); failing over to mock:beta (fallback 1 of 2)",
        "mock:beta failed (AuthenticationError 401); failing over to mock:gamma (fallback 2 of 2)",
    ]


def test_close_closes_every_model_once():
    models = [MockLlm(), MockLlm()]
    chain = FallbackLlm(models)
    chain.close()
    chain.close()
    assert all(m.closed for m in models)
    with pytest.raises(ValueError):
        FallbackLlm([])


# --- the whole stack: create_llm_client with [[llm.fallback]] -----------------------------------------


@pytest.fixture
def servers():
    with FakeLlmServer(api_key=PRIMARY_KEY, models=["primary-model"]) as primary, \
            FakeLlmServer(api_key=BACKUP_KEY, models=["backup-model"]) as backup:
        yield primary, backup


def chain_config(primary_config: LlmConfig, *fallbacks: LlmConfig, **retry) -> LlmConfig:
    """The primary's config with the others' models as fallbacks, max_attempts=2."""
    retry_config = RetryConfig(max_attempts=retry.get("max_attempts", 2), initial_wait_seconds=0.01,
                               max_wait_seconds=0.05)
    return LlmConfig(model=primary_config.model, rate_limit=primary_config.rate_limit,
                     retry=retry_config, fallback=tuple(f.model for f in fallbacks))


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens here any more: connection refused


def test_failover_on_500s_answers_from_the_fallback(servers, caplog):
    primary, backup = servers
    primary.fail_next(status=500, times=2)
    config = chain_config(primary.config(), backup.config())
    with caplog.at_level(logging.WARNING), create_llm_client(config) as llm:
        assert isinstance(llm, FallbackLlm)
        result = llm.chat(HELLO)
        usage = llm.usage()
    assert result.content == "echo: one two three" and result.model == "backup-model"
    assert len(primary.chat_requests) == 2 and len(backup.chat_requests) == 1  # the primary's budget first
    assert usage.models["primary-model"].failures == 1 and usage.models["primary-model"].retries == 1
    assert usage.models["backup-model"].requests == 1 and usage.models["backup-model"].failures == 0
    failover = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.client._fallback"]
    assert failover == ["openai:primary-model failed (ServerError 500); failing over to "
                        "openai:backup-model (fallback 1 of 1)"]
    assert not any(key in caplog.text for key in (PRIMARY_KEY, BACKUP_KEY))


def test_an_input_the_server_cannot_read_is_not_retried_but_fails_over(servers):
    # llama.cpp without a multimodal projector answers an image with this 500 every time.
    primary, backup = servers
    primary.fail_next(status=500, message="image input is not supported - hint: if this is unexpected, "
                      "you may need to provide the mmproj", times=5)
    with create_llm_client(chain_config(primary.config(), backup.config(), max_attempts=5)) as llm:
        result = llm.chat(HELLO)
    assert len(primary.chat_requests) == 1  # not the five attempts a 500 gets
    assert result.model == "backup-model"


def test_failover_on_connection_refused(servers):
    _, backup = servers
    dead = closed_port_url()
    with FakeLlmServer(api_key=PRIMARY_KEY) as template:
        primary_config = template.config(base_url=dead, model_name="dead-model")
    config = chain_config(primary_config, backup.config())
    with create_llm_client(config) as llm:
        result = llm.chat(HELLO)
        assert llm.usage().models["dead-model"].failures == 1
    assert result.model == "backup-model"


def test_no_failover_on_400(servers):
    primary, backup = servers
    primary.fail_next(status=400, message="context too long")
    with create_llm_client(chain_config(primary.config(), backup.config())) as llm:
        with pytest.raises(BadRequestError, match="context too long"):
            llm.chat(HELLO)
    assert len(primary.chat_requests) == 1 and backup.chat_requests == []


@pytest.mark.parametrize("fault", ["wrong_key", "unknown_model", "quota"])
def test_failover_on_401_404_and_an_exhausted_quota(servers, fault):
    primary, backup = servers
    overrides = {"wrong_key": {"api_key": "sk-wrong-000000000000"},
                 "unknown_model": {"model_name": "no-such-model"}, "quota": {}}[fault]
    if fault == "quota":
        primary.quota_exceeded_next()
    with create_llm_client(chain_config(primary.config(**overrides), backup.config())) as llm:
        assert llm.chat(HELLO).model == "backup-model"
    assert len(primary.chat_requests) == 1  # none of these is retried on the primary


def test_every_fallback_has_its_own_limiter_and_keeps_the_limits(servers):
    primary, backup = servers
    third_url = closed_port_url()
    primary_config = primary.config(max_concurrent=2)
    third = backup.config(base_url=third_url, provider="anthropic")
    config = chain_config(primary_config, backup.config(), third)
    with create_llm_client(config) as llm:
        limiters = [model.limiter for model in llm.chain]
    keys = [limiter.config.key for limiter in limiters]
    base = primary_config.rate_limit.key
    assert keys == [base, f"{base}:fallback0:openai:127.0.0.1", f"{base}:fallback1:anthropic:127.0.0.1"]
    assert keys[1] == fallback_limit_key(config.rate_limit, 0, config.fallback[0])
    assert len({id(limiter) for limiter in limiters}) == 3
    assert all(limiter.config.max_concurrent == 2 for limiter in limiters)
    assert get_global_rate_limiter(keys[2]) is limiters[2]  # registered process-wide


def test_stream_fails_over_before_the_first_piece(servers):
    primary, backup = servers
    primary.fail_next(status=503, times=2)
    with create_llm_client(chain_config(primary.config(), backup.config())) as llm:
        stream = llm.stream(HELLO)
        assert isinstance(stream, ChatStream)
        assert "".join(stream) == "echo: one two three" and stream.model == "backup-model"
        assert all(model.limiter.in_flight == 0 for model in llm.chain)
        assert llm.usage().models["backup-model"].completion_tokens > 0


def test_stream_failing_after_the_first_piece_is_not_failed_over(servers):
    primary, backup = servers
    primary.fail_mid_stream_next(after_chunks=3)
    with create_llm_client(chain_config(primary.config(), backup.config())) as llm:
        stream = llm.stream(HELLO)
        first = next(stream)
        with pytest.raises(ApiConnectionError):
            list(stream)
        assert first == "echo: "
        assert llm.chain[0].limiter.in_flight == 0
    assert backup.chat_requests == []


def test_anthropic_fallback_with_api_key_command(servers, tmp_path):
    primary, _ = servers
    with FakeLlmServer(api_key=BACKUP_KEY, models=["claude-backup"]) as claude:
        fallback = claude.config(provider="anthropic", api_key="", api_key_command=f"echo {BACKUP_KEY}")
        primary.fail_next(status=529, times=2)
        with create_llm_client(chain_config(primary.config(), fallback)) as llm:
            result = llm.chat(HELLO)
        assert result.model == "claude-backup" and result.content == "echo: one two three"
        assert claude.last_request.api_key == BACKUP_KEY


def test_a_failing_key_command_in_a_fallback_names_the_entry(servers):
    primary, backup = servers
    fallback = backup.config(api_key="", api_key_command="false")
    with pytest.raises(MissingApiKeyError, match=r"llm\.fallback\[0\]\.api_key_command"):
        create_llm_client(chain_config(primary.config(), fallback))


def test_a_plain_http_fallback_names_the_entry_in_its_message_and_key(servers):
    primary, backup = servers
    fallback = backup.config(base_url="http://example.com/v1")
    with pytest.raises(ConfigError) as caught:
        create_llm_client(chain_config(primary.config(), fallback))
    assert caught.value.key == "llm.fallback[0].base_url"
    assert str(caught.value).startswith("llm.fallback[0].base_url")


def test_fallbacks_from_a_config_file(servers, tmp_path):
    primary, backup = servers
    path = tmp_path / "config.toml"
    path.write_text(
        f'[llm.model]\nbase_url = "{primary.base_url}"\napi_key = "{PRIMARY_KEY}"\n'
        'model_name = "primary-model"\n'
        "[llm.rate_limit]\nmin_interval_seconds = 0\n"
        "[llm.retry]\nmax_attempts = 1\n"
        f'[[llm.fallback]]\nbase_url = "{backup.base_url}"\napi_key = "{BACKUP_KEY}"\n'
        'model_name = "backup-model"\n',
        encoding="utf-8")
    path.chmod(0o600)
    primary.fail_next(status=502)
    with create_llm_client(path=path) as llm:
        assert llm.generate_content("hi") == "echo: hi"
    assert len(backup.chat_requests) == 1


def test_eight_threads_fail_over_together(servers):
    """The chain is shared by 8 threads while the primary is down: every call is answered
    by the fallback, and each thread's answer is its own."""
    primary, backup = servers
    primary.fail_next(status=500, times=1000)
    config = chain_config(primary.config(max_concurrent=4), backup.config(max_concurrent=4), max_attempts=1)
    answers, errors = {}, []
    with create_llm_client(config) as llm:

        def worker(index):
            try:
                for round_ in range(5):
                    text = f"t{index} r{round_}"
                    result = llm.chat([{"role": "user", "content": text}])
                    answers[text] = (result.content, result.model)
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30.0)
        usage = llm.usage()
    assert errors == []
    assert answers == {text: (f"echo: {text}", "backup-model") for text in answers} and len(answers) == 40
    assert usage.models["primary-model"].failures == 40 and usage.models["backup-model"].requests == 40
