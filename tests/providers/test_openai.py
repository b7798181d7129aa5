"""OpenAIClient: request shape, status mapping, tolerant parsing, secrets, sessions."""

import http.server
import json
import logging
import socketserver
import threading

import jsonschema
import pytest
import requests
import responses

from cowork_llm._version import __version__
from cowork_llm.config import PROVIDERS, ModelConfig
from cowork_llm.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    LlmApiError,
    MissingApiKeyError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.providers import build_provider
from cowork_llm.providers._keys import KeyRotation
from cowork_llm.providers.openai import OpenAIClient

from ._wire_checks import _openapi_nullable_to_json_schema
from ._wire_checks import openai_request_validator as _chat_request_validator

KEY = "sk-test-0123456789abcdefSECRET"
BASE = "https://api.example.com/v1"
URL = BASE + "/chat/completions"
MESSAGES = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello"}]


def make_config(**overrides):
    fields = {"base_url": BASE, "api_key": KEY, "model_name": "gpt-4o-mini"}
    fields.update(overrides)
    return ModelConfig(**fields)


def completion(content="Hi there", **extra):
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini-2024",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        "system_fingerprint": "fp_1",
    }
    body.update(extra)
    return body


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def client():
    with OpenAIClient(make_config()) as llm:
        yield llm


# --- request shape ---------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [BASE, BASE + "/"])
def test_request_shape_and_headers(mock, base_url):
    mock.post(URL, json=completion())
    with OpenAIClient(make_config(base_url=base_url)) as llm:
        result = llm.chat(MESSAGES)
    assert result.content == "Hi there"
    (call,) = mock.calls
    assert call.request.url == URL and call.request.method == "POST"
    headers = call.request.headers
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["User-Agent"] == f"cowork-llm/{__version__}"
    assert headers["Content-Type"] == "application/json"
    # Unset options are left out entirely, never sent as null.
    assert json.loads(call.request.body) == {"model": "gpt-4o-mini", "messages": MESSAGES}


def test_timeouts_and_tls_verification_are_always_set(mock, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests would put these in `verify`
        monkeypatch.delenv(name, raising=False)
    mock.post(URL, json=completion())
    with OpenAIClient(make_config(timeout_seconds=45.0)) as llm:
        llm.chat(MESSAGES)
    kwargs = mock.calls[0].request.req_kwargs
    assert kwargs["timeout"] == (10.0, 45.0)
    assert kwargs["verify"] is True


def test_ca_bundle_is_used_for_verification(mock, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    mock.post(URL, json=completion())
    with OpenAIClient(make_config(ca_bundle=str(bundle))) as llm:
        llm.chat(MESSAGES)
    assert mock.calls[0].request.req_kwargs["verify"] == str(bundle)


def test_missing_ca_bundle_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="llm.model.ca_bundle"):
        OpenAIClient(make_config(ca_bundle=str(tmp_path / "nope.pem")))


def test_config_options_are_sent_and_call_options_override_them(mock):
    mock.post(URL, json=completion())
    with OpenAIClient(make_config(temperature=0.2, max_tokens=100)) as llm:
        llm.chat(MESSAGES)
        llm.chat(MESSAGES, temperature=0.0, max_tokens=5)
    first, second = (json.loads(c.request.body) for c in mock.calls)
    assert (first["temperature"], first["max_tokens"]) == (0.2, 100)
    assert (second["temperature"], second["max_tokens"]) == (0.0, 5)


def test_nullable_rewrite():
    assert _openapi_nullable_to_json_schema({"type": "integer", "nullable": True}) == {
        "type": ["integer", "null"]}
    assert _openapi_nullable_to_json_schema({"$ref": "#/x", "nullable": True}) == {
        "anyOf": [{"$ref": "#/x"}, {"type": "null"}]}
    assert _openapi_nullable_to_json_schema({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"], "enum": ["a", None]}


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7}, {"max_tokens": 64},
                                     {"temperature": 2, "max_tokens": 1}])
def test_request_body_validates_against_the_openai_schema(mock, options):
    mock.post(URL, json=completion())
    with OpenAIClient(make_config()) as llm:
        llm.chat(MESSAGES + [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "More"}],
                 **options)
    body = json.loads(mock.calls[0].request.body)
    _chat_request_validator().validate(body)


@pytest.mark.parametrize("bad", [
    {"model": "m"},                                                     # no messages
    {"model": "m", "messages": [{"role": "robot", "content": "x"}]},    # unknown role
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
])
def test_the_schema_check_is_not_vacuous(bad):
    with pytest.raises(jsonschema.ValidationError):
        _chat_request_validator().validate(bad)


@pytest.mark.parametrize("messages, options", [
    ([], {}),
    ("Hello", {}),
    ([{"role": "robot", "content": "x"}], {}),
    ([{"role": "user", "content": "  "}], {}),
    ([{"role": "user", "content": 5}], {}),
    (MESSAGES, {"temperature": 2.5}),
    (MESSAGES, {"temperature": "0.5"}),
    (MESSAGES, {"temperature": True}),
    (MESSAGES, {"max_tokens": 0}),
    (MESSAGES, {"max_tokens": 1.5}),
    (MESSAGES, {"max_tokens": True}),
])
def test_bad_arguments_raise_value_error_before_any_request(mock, client, messages, options):
    with pytest.raises(ValueError):
        client.chat(messages, **options)
    assert len(mock.calls) == 0


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("status, cls", [
    (400, BadRequestError), (422, BadRequestError), (401, AuthenticationError),
    (403, AuthenticationError), (404, NotFoundError), (429, RateLimitError),
    (500, ServerError), (502, ServerError), (503, ServerError), (504, ServerError), (529, ServerError),
])
def test_status_mapping_with_one_attempt_only(mock, client, status, cls):
    mock.post(URL, status=status, headers={"x-request-id": "req_9"},
              json={"error": {"message": f"boom {status}", "type": "x", "param": None, "code": None}})
    with pytest.raises(cls) as info:
        client.chat(MESSAGES)
    error = info.value
    assert type(error) is cls
    assert error.status_code == status and error.request_id == "req_9"
    assert f"boom {status}" in str(error)
    assert len(mock.calls) == 1  # no retry in the provider


def test_insufficient_quota_is_quota_exceeded(mock, client):
    mock.post(URL, status=429, json={"error": {"message": "You exceeded your current quota",
                                               "type": "insufficient_quota", "code": "insufficient_quota"}})
    with pytest.raises(QuotaExceededError):
        client.chat(MESSAGES)


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "3"}, 3.0), ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({}, None),
])
def test_retry_after_is_carried(mock, client, headers, expected):
    mock.post(URL, status=429, headers=headers, json={"error": {"message": "slow down"}})
    with pytest.raises(RateLimitError) as info:
        client.chat(MESSAGES)
    assert info.value.retry_after == expected


@pytest.mark.parametrize("exc, cls", [
    (requests.ConnectionError("Connection refused"), ApiConnectionError),
    (requests.ConnectTimeout("timed out"), ApiTimeoutError),
    (requests.ReadTimeout("timed out"), ApiTimeoutError),
])
def test_transport_failures(mock, client, exc, cls):
    mock.post(URL, body=exc)
    with pytest.raises(cls) as info:
        client.chat(MESSAGES)
    assert info.value.status_code is None


# --- tolerant parsing ------------------------------------------------------------------


def test_full_response_is_parsed(mock, client):
    mock.post(URL, json=completion(), headers={"x-request-id": "req_42"})
    result = client.chat(MESSAGES)
    assert result.content == "Hi there" and result.model == "gpt-4o-mini-2024"
    assert result.finish_reason == "stop" and result.request_id == "req_42"
    usage = result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 3, 12)
    assert result.raw["system_fingerprint"] == "fp_1"


def test_minimal_response_like_llama_cpp(mock, client):
    mock.post(URL, json={"choices": [{"message": {"content": "ok"}}]})
    result = client.chat(MESSAGES)
    assert result.content == "ok"
    assert result.model == "gpt-4o-mini"  # the configured name when the server sends none
    assert result.usage is None and result.request_id is None and result.finish_reason is None


def test_usage_without_total_and_body_id_as_request_id(mock, client):
    mock.post(URL, json={"id": "chatcmpl-7", "choices": [{"message": {"content": "ok"}}],
                         "usage": {"prompt_tokens": 4, "completion_tokens": 2}})
    result = client.chat(MESSAGES)
    assert result.usage.total_tokens == 6 and result.request_id == "chatcmpl-7"


def test_malformed_usage_is_ignored(mock, client):
    mock.post(URL, json={"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": "4"}})
    assert client.chat(MESSAGES).usage is None


def test_content_parts_are_joined(mock, client):
    parts = [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]
    mock.post(URL, json={"choices": [{"message": {"content": parts}}]})
    assert client.chat(MESSAGES).content == "Hello"


@pytest.mark.parametrize("reason", ["length", "content_filter", "tool_calls"])
def test_null_content_explained_by_finish_reason_is_empty(mock, client, reason):
    mock.post(URL, json={"choices": [{"finish_reason": reason, "message": {"content": None}}]})
    result = client.chat(MESSAGES)
    assert result.content == "" and result.finish_reason == reason


@pytest.mark.parametrize("body, words", [
    ({"choices": [{"finish_reason": "stop", "message": {"content": None}}]}, "no content"),
    ({"choices": [{"message": {"role": "assistant"}}]}, "no content"),
    ({"choices": [{"finish_reason": "stop", "message": {"content": None, "refusal": "I can't"}}]},
     "refused: I can't"),
    ({"choices": []}, "no choices"),
    ({"object": "chat.completion"}, "no choices"),
    ({"error": {"message": "overloaded, try later"}}, "overloaded, try later"),
    ({"choices": [{"text": "legacy"}]}, "no message"),
    ([1, 2], "no choices"),
])
def test_unusable_answers_are_invalid_response(mock, client, body, words):
    mock.post(URL, json=body, headers={"x-request-id": "req_5"})
    with pytest.raises(InvalidResponseError, match=words) as info:
        client.chat(MESSAGES)
    assert info.value.status_code == 200 and info.value.request_id == "req_5"


def test_non_json_2xx_is_invalid_response(mock, client):
    mock.post(URL, body="<html>proxy login</html>", content_type="text/html")
    with pytest.raises(InvalidResponseError, match="not JSON.*proxy login"):
        client.chat(MESSAGES)


# --- secrets and transport security --------------------------------------------------


def test_key_never_appears_in_errors_repr_or_logs(mock, caplog):
    mock.post(URL, status=401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}})
    caplog.set_level(logging.DEBUG)
    with OpenAIClient(make_config()) as llm:
        with pytest.raises(AuthenticationError) as info:
            llm.chat(MESSAGES)
        shown = [str(info.value), repr(info.value), repr(llm), str(llm.config), caplog.text]
    assert "Incorrect API key provided" in str(info.value)
    assert not any(KEY in text for text in shown)


def test_api_key_argument_replaces_the_configured_key(mock):
    mock.post(URL, json=completion())
    with build_provider(make_config(), api_key="sk-from-command-000000") as llm:
        llm.chat(MESSAGES)
    assert mock.calls[0].request.headers["Authorization"] == "Bearer sk-from-command-000000"


def test_key_is_read_per_request(mock, client):
    # The hook a key rotation will use: the next request sends the new key.
    mock.post(URL, json=completion())
    client.chat(MESSAGES)
    client._keys = KeyRotation(["sk-rotated-1111111111"])
    client.chat(MESSAGES)
    assert [c.request.headers["Authorization"] for c in mock.calls] == [
        f"Bearer {KEY}", "Bearer sk-rotated-1111111111"]


def test_empty_key_without_replacement_is_refused():
    config = make_config(api_key="", api_key_command="echo x")
    with pytest.raises(MissingApiKeyError):
        OpenAIClient(config)


@pytest.mark.parametrize("base_url", ["http://api.example.com/v1", "http://192.168.1.10:8000/v1"])
def test_plain_http_to_a_remote_host_is_refused(base_url):
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        OpenAIClient(make_config(base_url=base_url))


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1",
                                      "http://[::1]:8080/v1"])
def test_plain_http_to_loopback_is_fine(base_url):
    OpenAIClient(make_config(base_url=base_url)).close()


def test_allow_insecure_http(mock):
    mock.post("http://gpu-box.lan:8000/v1/chat/completions", json=completion())
    with OpenAIClient(make_config(base_url="http://gpu-box.lan:8000/v1", allow_insecure_http=True)) as llm:
        assert llm.chat(MESSAGES).content == "Hi there"


def test_redirect_to_another_host_drops_the_authorization_header(mock, client):
    mock.post(URL, status=307, headers={"Location": "https://elsewhere.example/v1/chat/completions"})
    mock.post("https://elsewhere.example/v1/chat/completions", json=completion())
    assert client.chat(MESSAGES).content == "Hi there"
    first, second = mock.calls
    assert first.request.headers["Authorization"] == f"Bearer {KEY}"
    assert second.request.url.startswith("https://elsewhere.example/")
    assert "Authorization" not in second.request.headers


def test_redirect_on_the_same_host_keeps_the_authorization_header(mock, client):
    # The counterpart that shows the check above could fail.
    mock.post(URL, status=307, headers={"Location": BASE + "/v2/chat/completions"})
    mock.post(BASE + "/v2/chat/completions", json=completion())
    client.chat(MESSAGES)
    assert mock.calls[1].request.headers["Authorization"] == f"Bearer {KEY}"


def test_registry():
    with build_provider(make_config()) as llm:
        assert isinstance(llm, OpenAIClient) and llm.name == "openai:gpt-4o-mini"
    with build_provider(make_config(provider="anthropic")) as llm:
        assert llm.name == "anthropic:gpt-4o-mini"


def test_every_configurable_provider_can_be_built():
    # One registry: the names the config accepts are exactly the providers that exist.
    for name in PROVIDERS:
        with build_provider(make_config(provider=name)) as llm:
            assert llm.name.startswith(f"{name}:")
    with pytest.raises(ConfigError, match=r"llm\.model\.provider"):
        make_config(provider="gemini")


# --- threads and real sockets --------------------------------------------------------


def test_threads_share_one_client_with_a_session_each(mock):
    def reply(request):
        content = json.loads(request.body)["messages"][-1]["content"]
        return 200, {}, json.dumps(completion(content=f"echo {content}"))

    mock.add_callback(responses.POST, URL, callback=reply)
    llm = OpenAIClient(make_config())
    errors, barrier = [], threading.Barrier(8)

    def work(i):
        barrier.wait()
        for j in range(10):
            text = f"t{i}-{j}"
            result = llm.chat([{"role": "user", "content": text}])
            if result.content != f"echo {text}":
                errors.append((text, result.content))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(mock.calls) == 80
    assert len(llm._sessions) == 0  # each thread's session was closed as the thread ended
    llm.chat([{"role": "user", "content": "main"}])
    assert len(llm._sessions) == 1
    llm.close()
    assert len(llm._sessions) == 0


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture
def local_server():
    """A real HTTP/1.1 server on 127.0.0.1 that counts connections and can be told to
    stall (until ``release`` is set) or to drop the connection."""
    state = {"connections": 0, "mode": "ok", "release": threading.Event()}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            state["connections"] += 1

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if state["mode"] == "stall":
                state["release"].wait(10)
            if state["mode"] == "drop":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"cho")
                self.close_connection = True
                return
            body = json.dumps(completion()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["base_url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    state["release"].set()
    server.shutdown()
    server.server_close()


def test_connections_are_kept_alive(local_server):
    with OpenAIClient(make_config(base_url=local_server["base_url"])) as llm:
        for _ in range(5):
            assert llm.chat(MESSAGES).content == "Hi there"
    assert local_server["connections"] == 1


def test_read_timeout_against_a_stalled_server(local_server):
    local_server["mode"] = "stall"
    with OpenAIClient(make_config(base_url=local_server["base_url"], timeout_seconds=0.3)) as llm:
        with pytest.raises(ApiTimeoutError, match="did not answer in time"):
            llm.chat(MESSAGES)


def test_connection_dropped_mid_body(local_server):
    local_server["mode"] = "drop"
    with OpenAIClient(make_config(base_url=local_server["base_url"])) as llm:
        with pytest.raises(ApiConnectionError) as info:
            llm.chat(MESSAGES)
    assert isinstance(info.value, LlmApiError) and KEY not in str(info.value)


def test_connection_refused():
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as s:
        port = s.server_address[1]  # closed when the block ends: nothing listens there
    with OpenAIClient(make_config(base_url=f"http://127.0.0.1:{port}/v1")) as llm:
        with pytest.raises(ApiConnectionError, match="could not reach openai"):
            llm.chat(MESSAGES)
