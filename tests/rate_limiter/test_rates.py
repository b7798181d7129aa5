"""The rates a limiter is built from: the interval padded by a small margin (so the
spacing holds at the server, not only at the limiter), requests_per_minute added only
when it can refuse, and what an embeddings request weighs."""

import logging

import pytest

from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter._rates import (
    admission_rates,
    estimate_embedding_tokens,
    request_log_rates,
    request_rates,
    reservation_horizon_seconds,
    reservation_lead_seconds,
)


def limits(rates):
    """(limit, interval_ms) of each pyrate Rate (which has no __eq__)."""
    return [(rate.limit, rate.interval) for rate in rates]


@pytest.mark.parametrize("seconds, padded_ms", [
    (0.5, 505),  # 1 % of the interval
    (2.0, 2020),  # 1 % = 20 ms, the cap
    (10.0, 10020),  # capped at 20 ms
    (0.01, 10 + 1),  # 0.1 ms rounds up to 1 ms
])
def test_the_interval_is_padded_by_one_percent_up_to_20_ms(seconds, padded_ms):
    config = RateLimitConfig(min_interval_seconds=seconds)
    assert limits(request_rates(config)) == [(1, round(seconds * 1000))]
    assert limits(admission_rates(config)) == [(1, padded_ms)]


def test_no_interval_means_no_interval_rate():
    assert limits(admission_rates(RateLimitConfig(min_interval_seconds=0))) == []


def test_a_one_millisecond_interval_is_kept():
    assert limits(request_rates(RateLimitConfig(min_interval_seconds=0.001))) == [(1, 1)]


def test_a_requests_per_minute_the_interval_implies_is_left_out(caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    config = RateLimitConfig(min_interval_seconds=2.0, requests_per_minute=40)
    assert limits(request_rates(config)) == [(1, 2000)]
    admission_rates(config)  # what the backends enforce says the same
    said = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.rate_limiter._rates"]
    assert said == ["requests_per_minute=40 is implied by min_interval_seconds=2.0"] * 2


def test_an_embeddings_request_weighs_its_characters_over_four():
    assert estimate_embedding_tokens(["abcd" * 10, "x"]) == 11
    assert estimate_embedding_tokens([]) == 0


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_backend_asked_without_tokens_spends_none(backend, tmp_path):
    from cowork_llm.rate_limiter.backends import build_backend

    config = RateLimitConfig(min_interval_seconds=0, tokens_per_minute=60, backend=backend,
                             path=str(tmp_path / "limits.db") if backend == "sqlite" else None)
    store = build_backend(config)
    try:
        for _ in range(5):
            assert store.try_acquire() == 0.0
        assert store.try_acquire(tokens=60) == 0.0  # the whole budget was still there
    finally:
        store.close()


@pytest.mark.parametrize("seconds, padded_us", [
    (0.01, 10_100),  # 100 requests/s: 10.1 ms, not 11 ms as in whole milliseconds
    (0.0005, 505),  # below a millisecond: kept, not rounded up to 1 ms
    (2.0, 2_020_000),
])
def test_the_request_logs_count_the_padded_interval_in_microseconds(seconds, padded_us):
    config = RateLimitConfig(min_interval_seconds=seconds)
    assert limits(request_log_rates(config)) == [(1, padded_us)]


def test_the_request_logs_keep_requests_per_minute_over_a_padded_minute():
    config = RateLimitConfig(min_interval_seconds=0.01, requests_per_minute=100)
    assert limits(request_log_rates(config)) == [(1, 10_100), (100, 60_020_000)]


@pytest.mark.parametrize("seconds, lead", [
    (2.0, 0.005),  # capped at 5 ms
    (0.01, 0.005),  # capped at 5 ms too
    (0.004, 0.002),  # half the interval
    (0, 0.0),  # no interval, nothing to reserve
])
def test_the_head_asks_at_most_5_ms_and_half_an_interval_ahead(seconds, lead):
    assert reservation_lead_seconds(RateLimitConfig(min_interval_seconds=seconds)) == pytest.approx(lead)


@pytest.mark.parametrize("seconds", [2.0, 0.01, 0.004, 0])
def test_a_start_may_be_reserved_100_ms_ahead(seconds):
    config = RateLimitConfig(min_interval_seconds=seconds)
    assert reservation_horizon_seconds(config) == pytest.approx(0.1)
    assert reservation_horizon_seconds(config) >= reservation_lead_seconds(config)


def test_a_lost_shared_record_holds_starts_for_the_longest_window_and_no_rate_for_nothing():
    from cowork_llm.rate_limiter._rates import lost_state_pause_seconds

    assert lost_state_pause_seconds(RateLimitConfig(min_interval_seconds=2.0)) == 2.02
    assert lost_state_pause_seconds(RateLimitConfig(min_interval_seconds=0.5,
                                                    requests_per_minute=100)) == 60.02
    assert lost_state_pause_seconds(RateLimitConfig(min_interval_seconds=0)) == 0


def test_an_interval_below_a_microsecond_is_still_an_interval():
    config = RateLimitConfig(min_interval_seconds=0.0000005)
    assert limits(request_log_rates(config)) == [(1, 2)]  # 1 µs, padded and rounded up
