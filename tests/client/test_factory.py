"""create_llm_client: config in, a rate-limited retrying client on the shared limiter out."""

import logging

import pytest

from cowork_llm import create_llm_client
from cowork_llm.client import RateLimitedLlm
from cowork_llm.errors import ConfigNotFoundError, MissingApiKeyError
from cowork_llm.rate_limiter import (
    get_global_rate_limiter,
    init_global_rate_limiter,
)
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.retry import RetryPolicy
from cowork_llm.testing import FakeLlmServer

KEY = "sk-factory-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh_registry():
    _reset_global_rate_limiters()
    yield
    _reset_global_rate_limiters()


@pytest.fixture(scope="module")
def server():
    with FakeLlmServer(api_key=KEY) as server:
        yield server


def test_client_from_a_config(server):
    config = server.config(min_interval_seconds=0.01, max_concurrent=2, max_attempts=3)
    with create_llm_client(config) as client:
        assert isinstance(client, RateLimitedLlm)
        assert client.name == client.inner.name and "fake-model" in client.name
        assert client.limiter is get_global_rate_limiter(config.rate_limit.key)
        assert client.limiter.config == config.rate_limit
        assert isinstance(client.retry, RetryPolicy) and client.retry.config == config.retry
        assert client.generate_content("hello") == "echo: hello"


def test_clients_with_the_same_key_share_one_limiter(server):
    config = server.config()
    first, second = create_llm_client(config), create_llm_client(config)
    assert first.limiter is second.limiter is init_global_rate_limiter(config.rate_limit)
    other = create_llm_client(server.config(key="another-quota"))
    assert other.limiter is not first.limiter
    for client in (first, second, other):
        client.close()
    assert not first.limiter.closed  # closing a client leaves the shared limiter alone


def test_one_info_line_with_provider_model_host_and_limits_never_the_key(server, caplog):
    config = server.config(min_interval_seconds=0.5, requests_per_minute=20)
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"):
        create_llm_client(config).close()
    lines = [r.getMessage() for r in caplog.records
             if r.levelno == logging.INFO and r.name == "cowork_llm.client._factory"]
    assert len(lines) == 1
    for part in ("provider=openai", "model=fake-model", "host=127.0.0.1", "min_interval=0.5s",
                 "max_concurrent=1", "requests_per_minute=20"):
        assert part in lines[0]
    assert KEY not in caplog.text and KEY[-8:] not in caplog.text


def test_loads_the_config_file_from_a_path(server, tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text(
        "[llm.model]\n"
        f'base_url = "{server.base_url}"\n'
        f'api_key = "{KEY}"\n'
        'model_name = "fake-model"\n'
        "[llm.rate_limit]\n"
        "min_interval_seconds = 0.0\n"
        'key = "from-file"\n',
        encoding="utf-8",
    )
    with create_llm_client(path=path) as client:
        assert client.limiter.config.key == "from-file"
        assert client.generate_content("from a file") == "echo: from a file"


def test_loads_from_the_environment_when_nothing_is_given(server, monkeypatch):
    for name, value in server.env(key="from-env").items():
        monkeypatch.setenv(name, value)
    with create_llm_client() as client:
        assert client.limiter.config.key == "from-env"
        assert client.generate_content("env") == "echo: env"


def test_config_errors_propagate_unchanged(monkeypatch):
    with pytest.raises(ConfigNotFoundError):
        create_llm_client()  # empty temp cwd, no COWORK_* variables
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    with pytest.raises(MissingApiKeyError):
        create_llm_client()


def test_config_and_path_together_is_a_value_error(server):
    with pytest.raises(ValueError, match="not both"):
        create_llm_client(server.config(), path="config.toml")
