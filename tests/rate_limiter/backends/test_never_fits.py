"""A request that could never be admitted is refused at once by every backend, with a
message naming the setting that stands in the way and what to do; a request exactly at
the limit is admitted."""

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterAcquireError
from cowork_llm.rate_limiter.backends import build_backend


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_backend(request, tmp_path):
    made = []

    def make(**settings):
        if request.param == "sqlite":
            settings.update(backend="sqlite", path=str(tmp_path / "l.sqlite"))
        elif request.param == "redis":
            settings.update(backend="redis", redis_url=request.getfixturevalue("redis_url"))
        backend = build_backend(RateLimitConfig(key=f"fit-{request.node.name}", **settings))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_a_request_heavier_than_the_request_rates_is_refused_naming_them(make_backend, request):
    backend = make_backend(min_interval_seconds=0, requests_per_minute=3)
    with pytest.raises(LimiterAcquireError) as caught:
        backend.try_acquire(weight=4)
    assert str(caught.value) == (
        "a request of weight 4 can never fit the request rates: at most 3 start(s) per "
        "window (llm.rate_limit min_interval_seconds = 0, requests_per_minute = 3, "
        f"key 'fit-{request.node.name}')")
    assert backend.try_acquire(weight=3) == 0.0  # the whole window's worth fits


def test_a_request_heavier_than_the_token_budget_is_refused_saying_what_to_do(make_backend, request):
    backend = make_backend(min_interval_seconds=0, tokens_per_minute=1000)
    with pytest.raises(LimiterAcquireError) as caught:
        backend.try_acquire(tokens=1001)
    assert str(caught.value) == (
        "this request is estimated at 1001 tokens (the larger of prompt characters / 4 "
        "and max_tokens), more than the whole budget of llm.rate_limit.tokens_per_minute "
        "= 1000: it can never fit. Shorten the prompt, lower max_tokens, or raise "
        "tokens_per_minute if the provider allows (key "
        f"'fit-{request.node.name}')")
    assert backend.try_acquire(tokens=1000) == 0.0  # the whole budget fits
    assert backend.try_acquire(tokens=1) > 0  # and is spent


def test_without_a_token_budget_any_estimate_fits_and_spends_nothing(make_backend):
    backend = make_backend(min_interval_seconds=0)
    for _ in range(3):
        assert backend.try_acquire(tokens=10**9) == 0.0


def test_a_one_token_request_spends_its_token(make_backend):
    backend = make_backend(min_interval_seconds=0, tokens_per_minute=2)
    assert backend.try_acquire(tokens=1) == 0.0
    assert backend.try_acquire(tokens=1) == 0.0
    assert backend.try_acquire(tokens=1) > 1  # the budget refills at 2 a minute


def test_a_request_refused_for_its_tokens_takes_no_request_slot(make_backend):
    backend = make_backend(min_interval_seconds=0, requests_per_minute=3, tokens_per_minute=2)
    assert backend.try_acquire(tokens=1) == 0.0
    assert backend.try_acquire(tokens=1) == 0.0
    assert backend.try_acquire(tokens=1) > 1  # no token left: refused...
    assert backend.try_acquire(tokens=0) == 0.0  # ...without spending the third start
