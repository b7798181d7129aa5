"""cowork_llm.providers._http: transport checks, Retry-After, error mapping, sessions."""

import json
import threading
from email.utils import formatdate

import pytest
import requests
import responses

from cowork_llm._version import __version__
from cowork_llm.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.providers import _http

URL = "https://llm.example/v1/x"


# --- transport -------------------------------------------------------------------------


@pytest.mark.parametrize("base_url, host", [
    ("http://127.0.0.1:8080/v1", "127.0.0.1"),
    ("http://127.3.4.5/v1", "127.3.4.5"),
    ("http://[::1]:9000/v1", "::1"),
    ("http://localhost:11434/v1", "localhost"),
    ("https://api.openai.com/v1", "api.openai.com"),
])
def test_https_and_loopback_are_allowed(base_url, host):
    _http.check_transport(base_url, host, False, key="llm.model")


@pytest.mark.parametrize("base_url, host", [
    ("http://api.example.com/v1", "api.example.com"),
    ("http://10.0.0.5/v1", "10.0.0.5"),
    ("http://localhost.evil.com/v1", "localhost.evil.com"),
    ("http://128.0.0.1/v1", "128.0.0.1"),
])
def test_plain_http_to_the_network_is_refused(base_url, host):
    with pytest.raises(ConfigError) as info:
        _http.check_transport(base_url, host, False, key="llm.model")
    text = str(info.value)
    assert "https://" in text and "llm.model.allow_insecure_http" in text


def test_allow_insecure_http_opts_out():
    _http.check_transport("http://api.example.com/v1", "api.example.com", True, key="llm.model")


@pytest.mark.parametrize("timeout, expected", [(60.0, (10.0, 60.0)), (3.0, (3.0, 3.0))])
def test_connect_timeout_is_capped_at_ten_seconds(timeout, expected):
    assert _http.request_timeouts(timeout) == expected


# --- Retry-After -----------------------------------------------------------------------


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # the precise one wins
    ({"retry-after-ms": "junk", "Retry-After": "9"}, 9.0),
    ({"Retry-After": "0"}, 0.0),
    ({}, None),
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "-3"}, None),
    ({"Retry-After": "nan"}, None),
    ({"Retry-After": "inf"}, None),
])
def test_retry_after_seconds_and_milliseconds(headers, expected):
    assert _http.parse_retry_after(headers) == expected


def test_retry_after_http_date_is_seconds_from_now():
    now = 1_700_000_000.0
    headers = {"Retry-After": formatdate(now + 30, usegmt=True)}
    assert _http.parse_retry_after(headers, now=now) == pytest.approx(30.0)


def test_retry_after_date_in_the_past_means_no_wait():
    now = 1_700_000_000.0
    assert _http.parse_retry_after({"Retry-After": formatdate(now - 30, usegmt=True)}, now=now) == 0.0


def test_retry_after_date_uses_the_clock_by_default():
    import time

    headers = {"Retry-After": formatdate(time.time() + 120, usegmt=True)}
    assert 100 < _http.parse_retry_after(headers) <= 120


def test_request_id_from_either_header():
    assert _http.request_id_of({"X-Request-Id": "req_1"}) == "req_1"
    assert _http.request_id_of({"request-id": "req_2"}) == "req_2"
    assert _http.request_id_of({}) is None


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
    error = _http.error_for_response(_response(status, "{}"), provider="openai", secrets=())
    assert type(error) is cls
    assert error.status_code == status


@pytest.mark.parametrize("field", ["code", "type"])
def test_429_with_insufficient_quota_is_quota_exceeded(field):
    body = json.dumps({"error": {"message": "You exceeded your current quota", field: "insufficient_quota"}})
    error = _http.error_for_response(_response(429, body), provider="openai", secrets=())
    assert type(error) is QuotaExceededError
    assert "exceeded your current quota" in str(error)


def test_error_carries_message_request_id_and_retry_after():
    body = '{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": null}}'
    response = _response(429, body, {"x-request-id": "req_abc", "retry-after": "12"})
    error = _http.error_for_response(response, provider="openai", secrets=())
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
    error = _http.error_for_response(_response(502, body, content_type=content_type),
                                     provider="openai", secrets=())
    assert expected in error.message


def test_long_body_is_truncated():
    error = _http.error_for_response(_response(500, "x" * 10_000, content_type="text/plain"),
                                     provider="openai", secrets=())
    assert len(error.message) < _http.MAX_MESSAGE_CHARS + 100


def test_echoed_key_is_redacted():
    key = "sk-test-SECRET-0123456789"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}})
    error = _http.error_for_response(_response(401, body), provider="openai", secrets=(key,))
    assert key not in str(error) and key not in repr(error)
    assert "[REDACTED]" in error.message


def test_3xx_left_unresolved_is_invalid_response():
    error = _http.error_for_response(_response(304), provider="openai", secrets=())
    assert type(error) is InvalidResponseError


@pytest.mark.parametrize("exc, cls", [
    (requests.ConnectTimeout("connect timed out"), ApiTimeoutError),
    (requests.ReadTimeout("read timed out"), ApiTimeoutError),
    (requests.ConnectionError("refused"), ApiConnectionError),
    (requests.exceptions.ChunkedEncodingError("dropped"), ApiConnectionError),
])
def test_transport_exceptions(exc, cls):
    error = _http.error_for_exception(exc, provider="openai", url=URL, timeout=(10, 60), secrets=())
    assert type(error) is cls
    assert error.status_code is None and URL in error.message


def test_read_timeout_wrapped_in_connection_error_is_a_timeout():
    import urllib3.exceptions

    inner = urllib3.exceptions.ReadTimeoutError(None, URL, "Read timed out.")
    error = _http.error_for_exception(requests.ConnectionError(inner), provider="openai", url=URL,
                                      timeout=(10, 60), secrets=())
    assert type(error) is ApiTimeoutError


# --- sessions --------------------------------------------------------------------------


def test_session_per_thread_and_close_closes_all(monkeypatch):
    pool = _http.SessionPool()
    closed = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(id(self)))
    seen = {}
    barrier = threading.Barrier(17)
    done = threading.Event()

    def work(i):
        barrier.wait()  # all threads alive at once, so no thread ident is reused
        for _ in range(50):
            session = pool.get()
            assert pool.get() is session
        seen[i] = session
        barrier.wait()
        done.wait(10)  # alive until the pool has been closed

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    barrier.wait()
    barrier.wait()
    assert len({id(s) for s in seen.values()}) == 16
    assert len(pool) == 16
    assert all(s.headers["User-Agent"] == f"cowork-llm/{__version__}" for s in seen.values())
    ours = sorted(id(s) for s in seen.values())
    pool.close()
    assert sorted(c for c in closed if c in ours) == ours  # (other tests' sessions may close meanwhile)
    pool.close()  # twice is fine
    done.set()
    for t in threads:
        t.join()
    assert sorted(c for c in closed if c in ours) == ours  # the threads' ends close nothing twice


def test_the_session_of_a_finished_thread_is_closed(monkeypatch):
    pool = _http.SessionPool()
    closed = []
    real_close = requests.Session.close
    monkeypatch.setattr(requests.Session, "close", lambda self: (closed.append(id(self)), real_close(self)))
    sessions = []
    for _ in range(20):
        t = threading.Thread(target=lambda: sessions.append(pool.get()))
        t.start()
        t.join()
    ours = {id(s) for s in sessions}
    assert sorted(c for c in closed if c in ours) == sorted(ours)  # each closed as its thread ended
    assert len(pool) == 0
    mine = pool.get()  # a live thread keeps its one session
    assert pool.get() is mine and len(pool) == 1


def test_a_thread_gets_a_fresh_session_after_close():
    pool = _http.SessionPool()
    first = pool.get()
    pool.close()
    second = pool.get()
    assert second is not first and len(pool) == 1
