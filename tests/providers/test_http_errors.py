"""cowork_llm.providers._http_errors: statuses and transport failures mapped to the error tree."""

import json
import logging
import socket
import threading

import pytest
import requests
import responses
import urllib3.exceptions

from cowork_llm.config import ModelConfig
from cowork_llm.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.providers import _http_errors, _response_meta, build_provider

URL = "https://llm.example/v1/x"


# --- error mapping ---------------------------------------------------------------------


def _response(status, body="", headers=None, content_type="application/json"):
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, URL, status=status, body=body, headers=headers or {},
                 content_type=content_type)
        return requests.post(URL, timeout=5)


@pytest.mark.parametrize("status, cls", [
    (400, BadRequestError), (422, BadRequestError), (401, AuthenticationError),
    (403, AuthenticationError), (404, NotFoundError), (408, ApiTimeoutError),
    (409, BadRequestError), (413, BadRequestError), (429, RateLimitError),
    (500, ServerError), (502, ServerError), (503, ServerError), (504, ServerError),
    (529, ServerError),
])
def test_status_maps_to_error_class(status, cls):
    error = _http_errors.error_for_response(_response(status, "{}"), provider="openai", secrets=())
    assert type(error) is cls
    assert error.status_code == status


# llama.cpp's answer to an image when started without a multimodal projector (measured:
# docs/llamacpp-notes.md).
LLAMACPP_NO_IMAGES = {"error": {"code": 500, "message": "image input is not supported - hint: if this is "
                                "unexpected, you may need to provide the mmproj", "type": "server_error"}}


def test_a_500_saying_the_input_is_not_supported_is_not_retried():
    error = _http_errors.error_for_response(_response(500, json.dumps(LLAMACPP_NO_IMAGES)),
                                            provider="openai", secrets=())
    assert type(error) is ServerError  # a fallback model, which may read images, is still tried
    assert error.should_retry is False  # every attempt would get the same answer
    assert "image input is not supported" in str(error) and "--mmproj" in str(error)
    other = _http_errors.error_for_response(_response(500, json.dumps({"error": {"message": "boom"}})),
                                            provider="openai", secrets=())
    assert other.should_retry is None and "--mmproj" not in str(other)


@pytest.mark.parametrize("field", ["code", "type"])
def test_429_with_insufficient_quota_is_quota_exceeded(field):
    body = json.dumps({"error": {"message": "You exceeded your current quota", field: "insufficient_quota"}})
    error = _http_errors.error_for_response(_response(429, body), provider="openai", secrets=())
    assert type(error) is QuotaExceededError
    assert "exceeded your current quota" in str(error)


def test_error_carries_message_request_id_and_retry_after():
    body = '{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": null}}'
    response = _response(429, body, {"x-request-id": "req_abc", "retry-after": "12"})
    error = _http_errors.error_for_response(response, provider="openai", secrets=())
    assert type(error) is RateLimitError
    assert error.request_id == "req_abc" and error.retry_after == 12.0
    assert "Rate limit reached for gpt-4o" in error.message
    assert "req_abc" in str(error) and "429" in str(error)


@pytest.mark.parametrize("body, content_type, expected", [
    ('{"error": "model is loading"}', "application/json", "model is loading"),
    ('{"message": "upstream exploded"}', "application/json", "upstream exploded"),
    ("<html>Bad Gateway</html>", "text/html", "<html>Bad Gateway</html>"),
])
def test_provider_message_from_other_shapes(body, content_type, expected):
    error = _http_errors.error_for_response(_response(502, body, content_type=content_type),
                                            provider="openai", secrets=())
    assert error.message == f"openai answered HTTP 502: {expected}"


def test_long_body_is_truncated():
    error = _http_errors.error_for_response(_response(500, "x" * 10_000, content_type="text/plain"),
                                            provider="openai", secrets=())
    assert len(error.message) < _response_meta.MAX_MESSAGE_CHARS + 100


def test_echoed_key_is_redacted():
    key = "sk-test-SECRET-0123456789"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}})
    error = _http_errors.error_for_response(_response(401, body), provider="openai", secrets=(key,))
    assert key not in str(error) and key not in repr(error)
    assert "[REDACTED]" in error.message


def test_3xx_left_unresolved_is_invalid_response():
    error = _http_errors.error_for_response(_response(304), provider="openai", secrets=())
    assert type(error) is InvalidResponseError


@pytest.mark.parametrize("exc, cls", [
    (requests.ConnectTimeout("connect timed out"), ApiTimeoutError),
    (requests.ReadTimeout("read timed out"), ApiTimeoutError),
    (requests.ConnectionError("refused"), ApiConnectionError),
    (requests.exceptions.ChunkedEncodingError("dropped"), ApiConnectionError),
])
def test_transport_exceptions(exc, cls):
    error = _http_errors.error_for_exception(exc, provider="openai", url=URL, timeout=(10, 60), secrets=())
    assert type(error) is cls
    assert error.status_code is None and URL in error.message


def test_read_timeout_wrapped_in_connection_error_is_a_timeout():
    inner = urllib3.exceptions.ReadTimeoutError(None, URL, "Read timed out.")
    error = _http_errors.error_for_exception(requests.ConnectionError(inner), provider="openai", url=URL,
                                             timeout=(10, 60), secrets=())
    assert type(error) is ApiTimeoutError


# --- found by mutation testing (TESTING.md) -------------------------------------------------


def test_an_error_without_a_body_is_explained_by_the_reason_phrase():
    error = _http_errors.error_for_response(_response(503, ""), provider="openai", secrets=())
    assert error.message == "openai answered HTTP 503: Service Unavailable"


@pytest.fixture
def too_many_headers():
    """A server that answers every request with 150 headers (http.client stops at 100)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
                             + b"Content-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    stop.set()
    server.close()
    thread.join(5)


def test_too_many_response_headers_are_an_invalid_response_that_says_so(too_many_headers):
    config = ModelConfig(base_url=too_many_headers, api_key="sk-headers-0123456789", model_name="m")
    with build_provider(config) as llm:
        with pytest.raises(InvalidResponseError) as info:
            llm.chat([{"role": "user", "content": "hi"}])
    assert info.value.message == ("the response header from 127.0.0.1 is too large (got more than 100 "
                                  "headers); the connection was dropped")


def test_a_transport_failure_logs_the_transports_own_text_at_debug_with_the_key_redacted(caplog):
    key = "sk-debug-0123456789abcdef"
    exc = requests.ConnectionError(f"pool exhausted after 3 tries ({key})")
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"):
        error = _http_errors.error_for_exception(exc, provider="openai", url=URL, timeout=(10, 60),
                                                 secrets=(key,))
    assert type(error) is ApiConnectionError
    assert [r.getMessage() for r in caplog.records] == [
        f"openai at {URL}: ConnectionError: pool exhausted after 3 tries ([REDACTED])"]
