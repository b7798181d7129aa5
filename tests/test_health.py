"""check_health: one GET /models, a clear phrase for every way it can fail, no key shown."""

import dataclasses
import socket

import pytest
import requests
import responses

from cowork_llm.config import ModelConfig
from cowork_llm.errors import ConfigError, MissingApiKeyError
from cowork_llm.health import HealthStatus, check_health
from cowork_llm.providers.anthropic import ANTHROPIC_VERSION
from cowork_llm.testing import FakeLlmServer

KEY = "sk-health-SECRET-0123456789abcdef"
API = "https://api.example.com/v1"


def model(base_url=API, **kw):
    return ModelConfig(base_url=base_url, api_key=kw.pop("api_key", KEY),
                       model_name=kw.pop("model_name", "gpt-4o"), **kw)


def assert_no_key(status: HealthStatus):
    assert KEY not in status.detail and KEY[-8:] not in status.detail
    assert KEY not in repr(status)


def free_closed_port():
    """A port nothing listens on: bound once to find it, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- against a real local server -------------------------------------------------------


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY, models=["fake-model"]) as srv:
        yield srv


def test_up(server):
    status = check_health(server.config().model)
    assert status.ok is True
    assert status.detail == "127.0.0.1: ok (HTTP 200)"
    assert status.latency_ms > 0
    sent = server.last_request
    assert (sent.method, sent.path) == ("GET", "/v1/models")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert server.chat_requests == []  # no completion quota used
    assert_no_key(status)


def test_up_but_the_configured_model_is_not_listed(server):
    config = dataclasses.replace(server.config().model, model_name="gpt-5")
    status = check_health(config)
    assert status.ok is True
    assert "model 'gpt-5' is not among the 1 listed" in status.detail


def test_anthropic_sends_its_own_headers(server):
    # The provider module says which headers (as the official SDK sends them); health
    # asks it rather than keeping a copy.
    status = check_health(server.config(provider="anthropic").model)
    assert status.ok, status.detail
    headers = server.last_request.headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "x-api-key" not in headers


def test_wrong_key_is_401(server):
    status = check_health(server.config().model, api_key="sk-wrong-key-000000000000")
    assert status.ok is False
    assert status.detail == "127.0.0.1: authentication failed (HTTP 401): check the API key"


def test_server_error_is_5xx(server):
    server.fail_next(status=500)
    status = check_health(server.config().model)
    assert status.ok is False
    assert "server error (HTTP 500)" in status.detail
    assert_no_key(status)


def test_down_is_connection_refused():
    status = check_health(model(f"http://127.0.0.1:{free_closed_port()}/v1"))
    assert status.ok is False
    assert status.detail == "127.0.0.1: connection refused: nothing is listening there"
    assert_no_key(status)


def test_tls_to_a_plain_http_port_is_a_tls_error(server):
    status = check_health(model(server.base_url.replace("http://", "https://")))
    assert status.ok is False
    assert status.detail.startswith("127.0.0.1: TLS error:")
    assert_no_key(status)


def test_a_silent_server_is_a_timeout(server):
    server.delay_next(2.0)
    status = check_health(server.config().model, timeout=0.2)
    assert status.ok is False
    assert status.detail == "127.0.0.1: no answer within 0.2 s"
    assert status.latency_ms >= 200


def test_a_given_session_is_used(server):
    with requests.Session() as session:
        sent = []
        session.hooks["response"].append(lambda r, *a, **k: sent.append(r.url))
        assert check_health(server.config().model, session=session).ok
    assert sent == [server.base_url + "/models"]


def test_dns_failure(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    status = check_health(model("https://no-such-host.invalid/v1"))
    assert status.ok is False
    assert status.detail == "no-such-host.invalid: DNS lookup failed: 'no-such-host.invalid' does not resolve"


def test_no_key_is_a_missing_key_error_not_a_request():
    config = ModelConfig(base_url=API, api_key="", model_name="m", api_key_command="get-key")
    with pytest.raises(MissingApiKeyError, match="api_key"):
        check_health(config)


def test_plain_http_to_a_remote_host_is_refused_before_sending_the_key():
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        check_health(model("http://api.example.com/v1"))


# --- every status, with responses ------------------------------------------------------


@pytest.mark.parametrize("status_code, ok, phrase", [
    (200, True, "ok (HTTP 200)"),
    (401, False, "authentication failed (HTTP 401): check the API key"),
    (403, False, "authentication failed (HTTP 403): check the API key"),
    (404, False, "not found (HTTP 404) at https://api.example.com/v1/models: check base_url"),
    (429, False, "rate limited (HTTP 429)"),
    (503, False, "server error (HTTP 503)"),
    (529, False, "server error (HTTP 529)"),
    (418, False, "unexpected answer (HTTP 418)"),
])
@responses.activate
def test_status_phrases(status_code, ok, phrase):
    # The body echoes the key, as a careless server might: it must not reach the detail.
    responses.get(f"{API}/models", status=status_code, json={"error": f"bad key {KEY}"})
    status = check_health(model())
    assert status.ok is ok
    assert status.detail.startswith(f"api.example.com: {phrase}")
    assert_no_key(status)
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


@responses.activate
def test_a_redirect_is_not_followed():
    responses.get(f"{API}/models", status=301, headers={"Location": "https://evil.example.net/models"})
    status = check_health(model())
    assert status.ok is False
    assert "redirected (HTTP 301) to https://evil.example.net/models: check base_url" in status.detail
    assert len(responses.calls) == 1


@responses.activate
def test_a_non_json_listing_is_still_healthy():
    responses.get(f"{API}/models", status=200, body="<html>hello</html>")
    assert check_health(model()).detail == "api.example.com: ok (HTTP 200)"


@responses.activate
def test_an_unclassified_connection_error_keeps_its_reason_without_the_key():
    responses.get(f"{API}/models", body=requests.ConnectionError(f"reset while sending {KEY}"))
    status = check_health(model())
    assert status.ok is False
    assert status.detail.startswith(
        "api.example.com: connection failed: ConnectionError: reset while sending")
    assert_no_key(status)


@responses.activate
def test_a_connect_timeout_is_named():
    responses.get(f"{API}/models", body=requests.ConnectTimeout("connect timed out"))
    status = check_health(model(), timeout=1.5)
    assert status.detail == "api.example.com: timed out connecting after 1.5 s"


def test_health_status_is_frozen():
    status = HealthStatus(True, 1.0, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.ok = False  # type: ignore[misc]
