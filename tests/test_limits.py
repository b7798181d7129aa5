"""What `client.limits()` returns and `cowork-llm health` prints: the configured limits
and, per dimension, what was learned, in words a person reads."""

from types import MappingProxyType

import pytest

from cowork_llm.limits import DimensionReport, LearnedLimit, LimitReport, LimitsSnapshot


def snapshot(learned=(), adaptive=True, rpm=None, tpm=None, pace="bucket"):
    return LimitsSnapshot("default", adaptive, pace, 0.5, 4, rpm, tpm,
                          MappingProxyType({limit.name: limit for limit in learned}))


def test_the_configured_limits_head_the_lines():
    assert snapshot(rpm=60, tpm=90000, pace="even").lines()[0] == (
        "rate limit 'default': min_interval_seconds=0.5, max_concurrent=4, requests_per_minute=60, "
        "tokens_per_minute=90000, adaptive=on (pace even)")
    assert snapshot(adaptive=False).lines()[0] == (
        "rate limit 'default': min_interval_seconds=0.5, max_concurrent=4, "
        "requests_per_minute=not set, tokens_per_minute=not set, adaptive=off (pace bucket)")


def test_nothing_learned_says_why():
    assert snapshot().lines()[1:] == ("  learned from the provider: nothing yet",)
    assert snapshot(adaptive=False).lines()[1:] == ("  learned from the provider: off (adaptive = false)",)


def test_learned_dimensions_in_a_fixed_order_with_their_level_and_refill():
    learned = [LearnedLimit("output_tokens", 8000, 7999.6, 8000 / 60, 1.0, 1.0),
               LearnedLimit("requests", 50, -3.2, 50 / 60, 1.0, 1.0),
               LearnedLimit("tokens", None, 1234.4, 2.5, 1.0, 1.0)]
    assert snapshot(learned).lines()[1:] == (
        "  learned requests: limit 50, about 0 left, refilling 50/min",  # never "-3 left"
        "  learned tokens: limit unknown, about 1234 left, refilling 150/min",
        "  learned output_tokens: limit 8000, about 8000 left, refilling 8000/min",
    )
    assert str(snapshot(learned)) == "\n".join(snapshot(learned).lines())


def test_a_refill_per_day_is_shown_per_minute_with_its_digits():
    groq = LearnedLimit("requests", 14400, 14370, 14400 / 86400, 1.0, 1.0)
    assert snapshot([groq]).lines()[1] == (
        "  learned requests: limit 14400, about 14370 left, refilling 10/min")
    odd = LearnedLimit("requests", 14400, 14370, 30 / 179.56, 1.0, 1.0)
    assert snapshot([odd]).lines()[1].endswith("refilling 10.0245/min")


def test_a_report_finds_its_dimensions_by_name():
    report = LimitReport("openai", (DimensionReport("requests", 5, 10, 1.0), DimensionReport("tokens", 7)))
    assert report.get("tokens") == DimensionReport("tokens", 7, None, None)
    assert report.get("input_tokens") is None
    with pytest.raises(AttributeError):
        report.family = "anthropic"
