"""The HTTP layer's promises about what reaches a user: a Retry-After date in any of the
three forms RFC 9110 requires, error messages cut at exactly MAX_MESSAGE_CHARS, and an
echoed key (whole or in part) replaced by a visible ``[REDACTED]`` marker."""

import json
import logging
import os
import time
from email.utils import formatdate

import pytest
import requests

from cowork_llm.providers import _http_errors, _response_meta, _sessions

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 GMT


def _response(status, body, content_type="application/json", headers=None):
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    response.headers["Content-Type"] = content_type
    response.headers.update(headers or {})
    response.url = "https://llm.example/v1/chat/completions"
    return response


@pytest.fixture
def new_york_local_time():
    """A machine whose local time is not GMT (CI's and this one's is)."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset (POSIX)")
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05EDT,M3.2.0,M11.1.0"
    time.tzset()
    try:
        assert time.localtime(NOW).tm_hour == 17  # 22:13 GMT is 17:13 in New York
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.mark.parametrize("form", [
    "Tue, 14 Nov 2023 22:13:50 GMT",  # IMF-fixdate, the one to send
    "Tuesday, 14-Nov-23 22:13:50 GMT",  # obsolete RFC 850
    "Tue Nov 14 22:13:50 2023",  # obsolete asctime: no zone, GMT by definition
])
def test_every_http_date_form_is_read_as_gmt(form, new_york_local_time):
    assert _response_meta.parse_retry_after({"Retry-After": form}, now=NOW) == pytest.approx(30.0)


def test_a_date_with_an_explicit_offset_is_honoured():
    assert _response_meta.parse_retry_after({"Retry-After": "Tue, 14 Nov 2023 23:14:00 +0100"},
                                   now=NOW) == pytest.approx(40.0)


def test_formatdate_round_trip_from_the_clock():
    assert _response_meta.parse_retry_after({"Retry-After": formatdate(NOW + 12, usegmt=True)},
                                   now=NOW) == pytest.approx(12.0)


# --- the message bound ---------------------------------------------------------------------


def _message(body, content_type="text/plain"):
    return _http_errors.error_for_response(_response(500, body, content_type), provider="openai",
                                           secrets=()).message


def test_a_long_provider_message_is_cut_at_exactly_the_bound():
    limit = _response_meta.MAX_MESSAGE_CHARS
    assert _message("x" * (limit + 1)) == "openai answered HTTP 500: " + "x" * limit + "…"
    assert _message("x" * 10_000) == "openai answered HTTP 500: " + "x" * limit + "…"


def test_a_message_at_the_bound_is_kept_whole():
    limit = _response_meta.MAX_MESSAGE_CHARS
    assert _message("y" * limit) == "openai answered HTTP 500: " + "y" * limit


def test_whitespace_is_collapsed_before_the_bound_is_applied():
    body = json.dumps({"error": {"message": "line one\n\n   line\ttwo  " + "z" * 600}})
    message = _message(body, "application/json")
    assert message.startswith("openai answered HTTP 500: line one line two zzz")
    assert message == ("openai answered HTTP 500: "
                       + ("line one line two " + "z" * 600)[:_response_meta.MAX_MESSAGE_CHARS] + "…")


# --- redaction -----------------------------------------------------------------------------


KEY = "sk-proj-Abc123Def456Ghi789"


def _echo(text, secrets=(KEY,)):
    body = json.dumps({"error": {"message": text}})
    return _http_errors.error_for_response(_response(401, body), provider="openai",
                                           secrets=secrets).message


@pytest.mark.parametrize("echoed", [
    KEY,  # the whole key
    KEY[3:],  # without its prefix
    KEY[:-6],  # cut short
    KEY[5:17],  # a piece from the middle
])
def test_an_echoed_key_or_piece_of_it_is_replaced_by_the_marker(echoed):
    message = _echo(f"Incorrect API key provided: {echoed}. Check it.")
    assert message == "openai answered HTTP 401: Incorrect API key provided: [REDACTED]. Check it."


def test_a_piece_shorter_than_eight_characters_is_left_alone():
    # mask_secret shows "sk-" and the last four characters; those are not a leak.
    assert _echo(f"key ending {KEY[-7:]}") == f"openai answered HTTP 401: key ending {KEY[-7:]}"


def test_two_echoes_give_two_markers_and_keep_the_text_between():
    message = _echo(f"got {KEY[2:12]} and {KEY[-9:]}!")
    assert message == "openai answered HTTP 401: got [REDACTED] and [REDACTED]!"


def test_redaction_also_covers_the_request_id():
    response = _response(500, "{}", headers={"x-request-id": f"req-{KEY[4:20]}-x"})
    error = _http_errors.error_for_response(response, provider="openai", secrets=(KEY,))
    assert error.request_id == "req-[REDACTED]-x"


# --- found by mutation testing (TESTING.md) -------------------------------------------------


def test_a_message_only_body_gives_that_message():
    body = json.dumps({"message": "upstream exploded"})
    assert _message(body, "application/json") == "openai answered HTTP 500: upstream exploded"


def test_plain_http_to_the_network_names_the_setting_in_the_error():
    from cowork_llm.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        _sessions.check_transport("http://api.example.com/v1", "api.example.com", False,
                              key="llm.fallback[0]")
    assert raised.value.key == "llm.fallback[0].base_url"


def test_an_exception_chain_that_loops_is_a_connection_error_not_a_hang():
    first, second = requests.ConnectionError("reset"), OSError("loop")
    first.__context__, second.__context__ = second, first
    error = _http_errors.error_for_exception(first, provider="openai", url="https://x/v1",
                                             timeout=(10, 60), secrets=())
    assert type(error).__name__ == "ApiConnectionError"


def test_a_rate_limited_key_is_logged_masked_with_the_next_one(caplog):
    from cowork_llm.providers._keys import KeyRotation

    caplog.set_level(logging.INFO, logger="cowork_llm")
    keys = KeyRotation(["sk-first-key-00001111", "sk-second-key-00002222"])
    keys.on_rate_limited("sk-first-key-00001111")
    assert [r.getMessage() for r in caplog.records] == [
        "llm.model: key 'sk-…1111' was rate limited; next requests use key 'sk-…2222'"]
