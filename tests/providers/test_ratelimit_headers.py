"""Rate-limit headers: OpenAI's (and Groq's, Together's, Azure's) x-ratelimit-*,
Anthropic's anthropic-ratelimit-*, x-should-retry; garbage ignored with one DEBUG line."""

import logging
from datetime import datetime, timezone

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from cowork_llm.errors import BadRequestError, RateLimitError, ServerError
from cowork_llm.limits import DimensionReport, LimitReport
from cowork_llm.providers._http_errors import error_for_response
from cowork_llm.providers._ratelimit_headers import (
    parse_duration,
    parse_rate_limit_headers,
    parse_rfc3339,
    should_retry_header,
)
from cowork_llm.retry import is_retryable

NOW = 1_750_000_000.0


@pytest.mark.parametrize("text, seconds", [
    ("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("2m59.56s", 179.56), ("9ms", 0.009),
    ("1h2m3s", 3723.0), ("0s", 0.0), ("500us", 0.0005), ("500µs", 0.0005), ("3ns", 3e-9),
    ("20", 20.0), ("0.5", 0.5), (" 7s ", 7.0), (".5s", 0.5),
])
def test_durations_as_the_providers_print_them(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1x", "1s2", "1 s", "ms", "1m-2s", "inf",
                                  "nan", "1e3s", "1s" * 40, "6m0s;", "1..5s"])
def test_not_durations(text):
        assert parse_duration(text) is None


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 99), st.sampled_from(sorted(_UNITS))),
                min_size=1, max_size=4))
def test_duration_grammar_any_sequence_of_parts(parts):
    """Every Go-style duration (parts of <number><unit>, with or without a fraction)
    parses to the sum of its parts."""
    text = "".join(f"{whole}.{frac:02d}{unit}" if frac else f"{whole}{unit}" for whole, frac, unit in parts)
    expected = sum((whole + frac / 100) * _UNITS[unit] for whole, frac, unit in parts)
    assert parse_duration(text) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@given(st.text(max_size=30))
def test_duration_parser_never_raises_and_never_goes_negative(text):
    value = parse_duration(text)
    assert value is None or value >= 0


def test_rfc3339():
    noon = datetime(2025, 6, 15, 14, 24, tzinfo=timezone.utc).timestamp()
    assert parse_rfc3339("2025-06-15T14:24:00Z") == noon
    assert parse_rfc3339("2025-06-15T16:24:00.5+02:00") == pytest.approx(noon + 0.5)
    for bad in ("2025-13-01T00:00:00Z", "2025-06-15T14:24:00", "yesterday", "2025-06-15", ""):
        assert parse_rfc3339(bad) is None


def test_openai_headers_as_documented():
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "150000",
               "x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "149984",
               "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s",
               "x-ratelimit-limit-tokens_usage_based": "150000"}  # sent by the API, not ours
    assert parse_rate_limit_headers(headers, now=NOW) == LimitReport("openai", (
        DimensionReport("requests", 59, 60, 1.0), DimensionReport("tokens", 149984, 150000, 360.0)))


def test_groq_daily_requests_keep_their_reset():
    report = parse_rate_limit_headers({
        "X-RateLimit-Limit-Requests": "14400", "X-RateLimit-Remaining-Requests": "14370",
        "X-RateLimit-Reset-Requests": "2m59.56s", "X-RateLimit-Limit-Tokens": "18000",
        "X-RateLimit-Remaining-Tokens": "17997", "X-RateLimit-Reset-Tokens": "7.66s"}, now=NOW)
    assert report is not None
    assert report.get("requests") == DimensionReport("requests", 14370, 14400, pytest.approx(179.56))
    assert report.get("tokens") == DimensionReport("tokens", 17997, 18000, pytest.approx(7.66))


def test_azure_integer_seconds_and_remaining_only():
    report = parse_rate_limit_headers({"x-ratelimit-remaining-requests": "99",
                                       "x-ratelimit-remaining-tokens": "9000",
                                       "x-ratelimit-reset-tokens": "20"}, now=NOW)
    assert report == LimitReport("openai", (DimensionReport("requests", 99, None, None),
                                            DimensionReport("tokens", 9000, None, 20.0)))


def test_anthropic_headers_with_rfc3339_resets():
    headers = {
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": _iso(NOW + 1.2),
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-input-tokens-reset": _iso(NOW + 1.5),
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "8000",
        "anthropic-ratelimit-output-tokens-reset": _iso(NOW),
        "anthropic-ratelimit-tokens-limit": "48000", "anthropic-ratelimit-tokens-remaining": "47000",
        "anthropic-ratelimit-tokens-reset": _iso(NOW - 5),  # in the past: full now
    }
    report = parse_rate_limit_headers(headers, now=NOW)
    assert report is not None and report.family == "anthropic"
    assert [d.name for d in report.dimensions] == ["requests", "tokens", "input_tokens", "output_tokens"]
    assert report.get("requests") == DimensionReport("requests", 49, 50, pytest.approx(1.2, abs=1e-3))
    assert report.get("input_tokens") == DimensionReport("input_tokens", 39000, 40000,
                                                         pytest.approx(1.5, abs=1e-3))
    assert report.get("tokens").reset_seconds == 0.0


def test_rounded_remaining_above_the_limit_is_capped():
    report = parse_rate_limit_headers({"anthropic-ratelimit-tokens-limit": "1500",
                                       "anthropic-ratelimit-tokens-remaining": "2000"}, now=NOW)
    assert report.get("tokens").remaining == 1500


def test_no_headers_no_report():
    assert parse_rate_limit_headers({"content-type": "application/json", "server": "llama.cpp"}) is None


def test_garbage_is_ignored_with_one_debug_line(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm.providers._ratelimit_headers")
    report = parse_rate_limit_headers({
        "x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "-3",
        "x-ratelimit-reset-requests": "soon", "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900", "x-ratelimit-reset-tokens": "9999999h",
    }, now=NOW)
    assert report == LimitReport("openai", (DimensionReport("tokens", 900, 1000, None),))
    lines = [r for r in caplog.records if r.name == "cowork_llm.providers._ratelimit_headers"]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert "'lots'" in lines[0].getMessage() and "'soon'" in lines[0].getMessage()


@given(st.dictionaries(
    st.sampled_from(["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                     "x-ratelimit-reset-requests", "x-ratelimit-remaining-tokens",
                     "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset",
                     "anthropic-ratelimit-output-tokens-limit", "x-ratelimit-reset-tokens"]),
    st.text(max_size=40)))
def test_any_header_values_never_raise(headers):
    report = parse_rate_limit_headers(headers, now=NOW)
    if report is not None:
        for dim in report.dimensions:
            assert dim.remaining >= 0 and (dim.limit is None or 0 <= dim.remaining <= dim.limit)
            assert dim.reset_seconds is None or dim.reset_seconds >= 0


def test_should_retry_header():
    assert should_retry_header({"X-Should-Retry": "true"}) is True
    assert should_retry_header({"x-should-retry": "false"}) is False
    assert should_retry_header({"x-should-retry": "maybe"}) is None
    assert should_retry_header({}) is None


def _response(status, headers):
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = b'{"error": {"message": "m", "type": "t"}}'
    return response


@pytest.mark.parametrize("status, header, cls, retried", [
    (429, "false", RateLimitError, False), (503, "false", ServerError, False),
    (400, "true", BadRequestError, True), (409, "true", BadRequestError, True),
    (503, None, ServerError, True), (400, None, BadRequestError, False),
])
def test_x_should_retry_is_obeyed_by_the_retry_policy(status, header, cls, retried):
    headers = {"x-should-retry": header} if header else {}
    error = error_for_response(_response(status, headers), provider="openai", secrets=())
    assert type(error) is cls
    assert is_retryable(error) is retried


def test_errors_carry_the_rate_limit_report():
    error = error_for_response(_response(429, {"x-ratelimit-limit-requests": "10",
                                               "x-ratelimit-remaining-requests": "0",
                                               "x-ratelimit-reset-requests": "6s"}),
                               provider="openai", secrets=())
    assert error.rate_limits == LimitReport("openai", (DimensionReport("requests", 0, 10, 6.0),))


def _iso(when):
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_anthropic_reset_is_read_in_utc_whatever_the_offset():
    """An RFC 3339 instant names one moment: Z, z, +hh:mm and -hh:mm forms of it agree,
    a space may stand for the T (RFC 3339 section 5.6 allows it), and the local zone of
    the machine plays no part."""
    noon = datetime(2025, 6, 15, 12, 0, tzinfo=timezone.utc).timestamp()
    for text in ("2025-06-15T12:00:00Z", "2025-06-15t12:00:00z", "2025-06-15 12:00:00Z",
                 "2025-06-15T14:30:00+02:30", "2025-06-15T07:15:00-04:45",
                 " 2025-06-15T12:00:00Z "):
        assert parse_rfc3339(text) == noon, text
    assert parse_rfc3339("2025-06-15T12:00:00.25Z") == noon + 0.25


def test_anthropic_reset_in_a_leap_second_is_read_as_the_end_of_the_minute():
    end = datetime(2016, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    assert parse_rfc3339("2016-12-31T23:59:60Z") == end


def test_anthropic_reset_is_seconds_from_now():
    headers = {"anthropic-ratelimit-requests-limit": "50",
               "anthropic-ratelimit-requests-remaining": "0",
               "anthropic-ratelimit-requests-reset": "2025-06-15T12:00:30Z"}
    noon = datetime(2025, 6, 15, 12, 0, tzinfo=timezone.utc).timestamp()
    assert parse_rate_limit_headers(headers, now=noon).get("requests").reset_seconds == 30.0


def test_an_anthropic_reset_in_duration_form_is_not_guessed_at(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm.providers._ratelimit_headers")
    report = parse_rate_limit_headers({"anthropic-ratelimit-requests-remaining": "3",
                                       "anthropic-ratelimit-requests-reset": "6m0s"}, now=NOW)
    assert report == LimitReport("anthropic", (DimensionReport("requests", 3, None, None),))
    assert "requests reset '6m0s'" in caplog.text


def test_a_reset_of_more_than_a_week_is_nonsense_and_ignored():
    week = 7 * 24 * 3600
    assert parse_rate_limit_headers({"x-ratelimit-remaining-requests": "1",
                                     "x-ratelimit-reset-requests": f"{week}"},
                                    now=NOW).get("requests").reset_seconds == week
    assert parse_rate_limit_headers({"x-ratelimit-remaining-requests": "1",
                                     "x-ratelimit-reset-requests": f"{week + 1}"},
                                    now=NOW).get("requests").reset_seconds is None
    assert parse_rate_limit_headers({"anthropic-ratelimit-requests-remaining": "1",
                                     "anthropic-ratelimit-requests-reset": _iso(NOW + week + 10)},
                                    now=NOW).get("requests").reset_seconds is None


def test_values_up_to_64_characters_are_read_longer_ones_are_not():
    padded = "1s" * 32  # 64 characters: 32 seconds
    assert parse_duration(padded) == 32.0
    assert parse_duration(padded + "1s") is None
    assert parse_rate_limit_headers({"x-ratelimit-remaining-tokens": "0" * 63 + "7"},
                                    now=NOW).get("tokens").remaining == 7
    assert parse_rate_limit_headers({"x-ratelimit-remaining-tokens": "0" * 64 + "7"}, now=NOW) is None
    assert parse_rfc3339("2025-06-15T12:00:00." + "0" * 40 + "Z") is not None  # 61 characters
    assert parse_rfc3339("2025-06-15T12:00:00." + "0" * 44 + "Z") is None  # 65


def test_a_limit_of_zero_is_not_a_limit(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm.providers._ratelimit_headers")
    report = parse_rate_limit_headers({"x-ratelimit-limit-requests": "0",
                                       "x-ratelimit-remaining-requests": "0"}, now=NOW)
    assert report == LimitReport("openai", (DimensionReport("requests", 0, None, None),))
    assert "requests limit 0" in caplog.text


def test_a_remaining_equal_to_the_limit_is_kept():
    report = parse_rate_limit_headers({"x-ratelimit-limit-tokens": "1000",
                                       "x-ratelimit-remaining-tokens": "1000"}, now=NOW)
    assert report.get("tokens") == DimensionReport("tokens", 1000, 1000, None)


def test_a_dimension_without_its_remaining_count_is_left_out_and_said_so(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm.providers._ratelimit_headers")
    report = parse_rate_limit_headers({"x-ratelimit-limit-requests": "60",
                                       "x-ratelimit-reset-requests": "1s",
                                       "x-ratelimit-remaining-tokens": "500"}, now=NOW)
    assert report == LimitReport("openai", (DimensionReport("tokens", 500, None, None),))
    assert "requests without a remaining count" in caplog.text
    assert parse_rate_limit_headers({"x-ratelimit-limit-requests": "60"}, now=NOW) is None


def test_nothing_is_logged_for_good_headers(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm.providers._ratelimit_headers")
    parse_rate_limit_headers({"x-ratelimit-limit-requests": "60",
                              "x-ratelimit-remaining-requests": "59",
                              "x-ratelimit-reset-requests": "1s"}, now=NOW)
    assert caplog.records == []


def test_a_garbage_value_is_quoted_cut_to_64_characters(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm.providers._ratelimit_headers")
    parse_rate_limit_headers({"x-ratelimit-remaining-requests": "x" * 500,
                              "x-ratelimit-limit-tokens": "y" * 500,
                              "x-ratelimit-remaining-tokens": "1",
                              "x-ratelimit-reset-tokens": "z" * 500}, now=NOW)
    message = caplog.records[0].getMessage()
    assert message.startswith("ignored unreadable rate-limit headers (openai family): ")
    for letter, what in (("x", "requests remaining"), ("y", "tokens limit"), ("z", "tokens reset")):
        assert f"{what} '{letter * 64}'" in message
        assert letter * 65 not in message
    assert "; " in message


def test_anthropic_headers_win_when_both_families_are_sent():
    report = parse_rate_limit_headers({"x-ratelimit-remaining-requests": "5",
                                       "anthropic-ratelimit-requests-remaining": "7",
                                       "anthropic-ratelimit-requests-limit": "50"}, now=NOW)
    assert report == LimitReport("anthropic", (DimensionReport("requests", 7, 50, None),))


def test_header_names_of_other_shapes_are_not_rate_limits():
    assert parse_rate_limit_headers({"x-ratelimit-remaining": "5",
                                     "x-ratelimit-remaining-images": "5",
                                     "x-ratelimit-used-requests": "5",
                                     "anthropic-ratelimit-requests-used": "5",
                                     "anthropic-ratelimit-images-remaining": "5",
                                     "ratelimit-remaining": "5"}, now=NOW) is None


def test_should_retry_header_reads_any_case_and_spacing():
    assert should_retry_header({"content-type": "text/plain", "X-SHOULD-RETRY": " TRUE "}) is True
    assert should_retry_header({"x-should-retry": "False"}) is False
