"""cowork_llm.providers._response_meta: Retry-After and request ids."""

from email.utils import formatdate

import pytest
import requests

from cowork_llm.providers import _response_meta

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
    assert _response_meta.parse_retry_after(headers) == expected


def test_retry_after_http_date_is_seconds_from_now():
    now = 1_700_000_000.0
    headers = {"Retry-After": formatdate(now + 30, usegmt=True)}
    assert _response_meta.parse_retry_after(headers, now=now) == pytest.approx(30.0)


def test_retry_after_date_in_the_past_means_no_wait():
    now = 1_700_000_000.0
    headers = {"Retry-After": formatdate(now - 30, usegmt=True)}
    assert _response_meta.parse_retry_after(headers, now=now) == 0.0


def test_retry_after_date_uses_the_clock_by_default():
    import time

    headers = {"Retry-After": formatdate(time.time() + 120, usegmt=True)}
    assert 100 < _response_meta.parse_retry_after(headers) <= 120


def test_request_id_from_either_header():
    assert _response_meta.request_id_of({"X-Request-Id": "req_1"}) == "req_1"
    assert _response_meta.request_id_of({"request-id": "req_2"}) == "req_2"
    assert _response_meta.request_id_of({}) is None


# --- the body's text -------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_a_body_that_declares_no_charset_is_read_as_utf8(content_type):
    # Left to requests, text/* would be Latin-1 and no type at all a guess (this body
    # guesses as UTF-16).
    response = requests.Response()
    response.status_code = 200
    response._content = '{"x": "ÄÖÜ"}'.encode()
    if content_type:
        response.headers["Content-Type"] = content_type
    _response_meta.check_utf8(response, provider="openai")
    assert response.text == '{"x": "ÄÖÜ"}'
