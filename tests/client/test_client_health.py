"""client.health() and `cowork-llm health` with the key requests really send: up, down,
401, 500, a rotated key, api_key_command; no completion quota, no limiter slot, no key."""

import logging
import os
import sys

import pytest

from cowork_llm import create_llm_client
from cowork_llm.cli import main
from cowork_llm.client import RateLimitedLlm
from cowork_llm.errors import AuthenticationError
from cowork_llm.testing import FakeLlmServer, MockLlm

KEY = "sk-health-SECRET-0123456789abcdef"
OTHER_KEY = "sk-health-OTHER-fedcba9876543210"


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _never_the_key(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    yield
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for key in (KEY, OTHER_KEY):
        assert key not in logged and key[-8:] not in logged


def no_key_in(status):
    return all(key not in status.detail and key[-8:] not in status.detail for key in (KEY, OTHER_KEY))


def test_up_is_ok_and_uses_no_completion_and_no_slot(server):
    with create_llm_client(server.config(min_interval_seconds=2.0)) as client:
        status = client.health()
        again = client.health()  # no 2 s interval between checks: they take no slot
        admitted = client.limiter.admitted_count
    assert status.ok and again.ok
    assert status.detail == "127.0.0.1: ok (HTTP 200)"
    assert status.latency_ms >= 0
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/v1/models")] * 2
    assert all(r.api_key == KEY for r in server.requests)
    assert admitted == 0


def test_down_says_refused(server):
    config = server.config()
    server.stop()
    with create_llm_client(config) as client:
        status = client.health(timeout=2.0)
    assert not status.ok
    assert "connection refused" in status.detail


def test_a_wrong_key_says_401_without_showing_it(server):
    with create_llm_client(server.config(api_key=OTHER_KEY)) as client:
        status = client.health()
    assert not status.ok
    assert "authentication failed (HTTP 401)" in status.detail and no_key_in(status)


def test_a_server_error_says_500(server):
    server.fail_next(500, path="/v1/models")
    with create_llm_client(server.config()) as client:
        status = client.health()
        assert client.health().ok  # the fault was for one request only
    assert not status.ok
    assert "server error (HTTP 500)" in status.detail


def test_health_checks_with_the_key_the_rotation_uses_now(server):
    """A key rejected by a chat call is out of the rotation: health checks the next one."""
    config = server.config(api_key=OTHER_KEY, extra_api_keys=(KEY,))
    with create_llm_client(config) as client:
        client.chat([{"role": "user", "content": "hello"}])  # 401 on OTHER_KEY, then KEY
        status = client.health()
    assert status.ok
    assert server.requests[-1].path == "/v1/models" and server.requests[-1].api_key == KEY


def test_a_rejected_single_key_is_checked_again(server):
    with create_llm_client(server.config(api_key=OTHER_KEY)) as client:
        with pytest.raises(AuthenticationError):
            client.chat([{"role": "user", "content": "hello"}])
        sent = len(server.requests)
        status = client.health()
    assert not status.ok and "HTTP 401" in status.detail and no_key_in(status)
    assert len(server.requests) == sent + 1  # the one key is still tried, not given up on


def key_command(key):
    return f"{sys.executable} -c 'print(\"{key}\")'"


def test_health_uses_the_key_from_api_key_command(server):
    config = server.config(api_key="", api_key_command=key_command(KEY))
    with create_llm_client(config) as client:
        assert client.health().ok
    assert server.requests[-1].api_key == KEY


def test_cli_health_uses_the_key_from_api_key_command(server, capsys):
    with open("config.toml", "w") as f:
        f.write(f'[llm.model]\nbase_url = "{server.base_url}"\nmodel_name = "fake-model"\n'
                f'api_key_command = """{key_command(KEY)}"""\n')
    os.chmod("config.toml", 0o600)
    code = main(["health"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert out.startswith("healthy: openai fake-model at 127.0.0.1: ok (HTTP 200)")
    assert server.requests[-1].api_key == KEY
    assert KEY not in out + err


def test_cli_health_with_a_failing_key_command_is_a_configuration_error(server, capsys):
    with open("config.toml", "w") as f:
        f.write(f'[llm.model]\nbase_url = "{server.base_url}"\nmodel_name = "fake-model"\n'
                f'api_key_command = "{sys.executable} -c \\"import sys; sys.exit(3)\\""\n')
    os.chmod("config.toml", 0o600)
    assert main(["health"]) == 2
    assert "api_key_command" in capsys.readouterr().err
    assert server.requests == []


def test_an_llm_without_a_health_check_says_so():
    client = RateLimitedLlm(MockLlm())
    with pytest.raises(NotImplementedError, match="MockLlm"):
        client.health()
