"""UsageTracker: per-model totals, cost arithmetic, snapshots, thread safety."""

import dataclasses
import json
import threading

import pytest

from cowork_llm.config import ModelPrice
from cowork_llm.results import Usage
from cowork_llm.usage import ModelUsage, UsageTracker, call_cost, format_usage

PRICES = {
    "gpt-4o": ModelPrice(input_per_million=2.5, output_per_million=10.0),
    "cheap": ModelPrice(input_per_million=0.1, output_per_million=0.4),
}


def test_cost_arithmetic_per_call_and_in_totals():
    tracker = UsageTracker(PRICES)
    cost = tracker.record_success("gpt-4o", Usage.of(1000, 500), latency=0.5)
    # 1000 * 2.5 / 1e6 + 500 * 10 / 1e6
    assert cost == pytest.approx(0.0025 + 0.005)
    tracker.record_success("gpt-4o", Usage.of(2_000_000, 0), latency=0.5)
    usage = tracker.snapshot().models["gpt-4o"]
    assert usage.cost == pytest.approx(0.0075 + 5.0)
    assert usage.prompt_tokens == 2_001_000
    assert usage.completion_tokens == 500
    assert usage.total_tokens == 2_001_500
    assert call_cost(PRICES["cheap"], Usage.of(1_000_000, 1_000_000)) == pytest.approx(0.5)


def test_unpriced_model_has_no_cost_not_zero():
    tracker = UsageTracker(PRICES)
    assert tracker.record_success("llama", Usage.of(10, 10), latency=0.1) is None
    snap = tracker.snapshot()
    assert snap.models["llama"].cost is None
    assert snap.total.cost is None
    assert snap.unpriced_models == ("llama",)
    assert not snap.cost_complete
    assert "cost unknown" in format_usage(snap)


def test_partly_priced_total_counts_priced_models_and_names_the_others():
    tracker = UsageTracker(PRICES)
    tracker.record_success("cheap", Usage.of(1_000_000, 0), latency=0.1)
    tracker.record_success("llama", Usage.of(5, 5), latency=0.1)
    snap = tracker.snapshot()
    assert snap.total.cost == pytest.approx(0.1)
    assert snap.unpriced_models == ("llama",)
    assert snap.cost_complete is False
    line = format_usage(snap)
    assert "cost 0.100000 excluding unpriced llama" in line


def test_fully_priced_snapshot_is_complete():
    tracker = UsageTracker(PRICES)
    tracker.record_success("cheap", Usage.of(10, 10), latency=0.1)
    snap = tracker.snapshot()
    assert snap.cost_complete and snap.unpriced_models == ()
    assert "excluding" not in format_usage(snap)


def test_snapshot_model_names_get_the_alias_price_but_not_a_longer_name():
    tracker = UsageTracker(PRICES)
    assert tracker.price_for("gpt-4o-2024-08-06") == PRICES["gpt-4o"]
    assert tracker.price_for("cheap-0613") == PRICES["cheap"]
    assert tracker.price_for("gpt-4o-mini") is None
    assert tracker.price_for("gpt-4o-mini-2024-07-18") is None


def test_cache_hits_count_as_requests_but_add_no_tokens_or_cost():
    tracker = UsageTracker(PRICES)
    assert tracker.record_success("gpt-4o", Usage.of(100, 100), latency=0.001, cached=True) == 0.0
    assert tracker.record_success("llama", Usage.of(100, 100), latency=0.001, cached=True) is None
    snap = tracker.snapshot()
    assert snap.total.requests == 2 and snap.total.cached_hits == 2
    assert snap.total.total_tokens == 0
    assert snap.models["gpt-4o"].cost == 0.0
    assert snap.total.http_attempts == 0


def test_missing_usage_is_counted_as_unreported():
    tracker = UsageTracker(PRICES)
    assert tracker.record_success("gpt-4o", None, latency=0.2) is None
    snap = tracker.snapshot()
    assert snap.models["gpt-4o"].unreported_usage == 1
    assert snap.models["gpt-4o"].cost == 0.0
    assert "1 without a token count" in format_usage(snap)


def test_failures_retries_and_waits_are_totalled():
    tracker = UsageTracker()
    tracker.record_failure("m", retries=4, waited=8.0, latency=9.5)
    tracker.record_success("m", Usage.of(1, 2), latency=1.0, waited=2.0, retries=1)
    usage = tracker.snapshot().models["m"]
    assert (usage.requests, usage.failures, usage.retries) == (2, 1, 5)
    assert usage.waited_seconds == pytest.approx(10.0)
    assert usage.latency_seconds == pytest.approx(10.5)
    assert usage.http_attempts == 2 + 5


def test_snapshot_is_frozen_and_independent_of_later_calls():
    tracker = UsageTracker(PRICES)
    tracker.record_success("cheap", Usage.of(1, 1), latency=0.1)
    snap = tracker.snapshot()
    tracker.record_success("cheap", Usage.of(1, 1), latency=0.1)
    assert snap.models["cheap"].requests == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.total.requests = 5  # type: ignore[misc]


def test_to_dict_is_json_ready_and_keeps_none_costs():
    tracker = UsageTracker(PRICES)
    tracker.record_success("cheap", Usage.of(1000, 0), latency=0.1)
    tracker.record_success("llama", Usage.of(3, 4), latency=0.1)
    data = json.loads(json.dumps(tracker.snapshot().to_dict()))
    assert data["models"]["llama"]["cost"] is None
    assert data["models"]["cheap"]["prompt_tokens"] == 1000
    assert data["total"]["requests"] == 2
    assert data["unpriced_models"] == ["llama"]
    assert data["cost_complete"] is False


def test_format_usage_of_an_empty_tracker_and_plurals():
    assert format_usage(UsageTracker().snapshot()) == (
        "usage: 0 requests (0 cached, 0 failed, 0 retries), 0 prompt + 0 completion tokens, "
        "waited 0.0 s"
    )
    tracker = UsageTracker(PRICES)
    tracker.record_success("gpt-4o", Usage.of(1200, 340), latency=1.0, waited=4.0, retries=1)
    assert format_usage(tracker.snapshot()) == (
        "usage: 1 request (0 cached, 0 failed, 1 retry), 1,200 prompt + 340 completion tokens, "
        "waited 4.0 s, cost 0.006400"
    )


def test_reset_forgets_totals_but_keeps_prices():
    tracker = UsageTracker(PRICES)
    tracker.record_success("cheap", Usage.of(1, 1), latency=0.1)
    tracker.reset()
    assert tracker.snapshot().total == ModelUsage()
    assert tracker.price_for("cheap") == PRICES["cheap"]


def test_totals_under_many_threads_equal_the_sum_of_the_parts():
    tracker = UsageTracker(PRICES)
    models = ["gpt-4o", "cheap", "llama"]
    threads_n, calls = 12, 400
    start = threading.Barrier(threads_n)
    snapshots = []

    def work(i):
        start.wait()
        for j in range(calls):
            model = models[(i + j) % 3]
            if j % 10 == 0:
                tracker.record_failure(model, retries=2, waited=0.5)
            elif j % 7 == 0:
                tracker.record_success(model, Usage.of(7, 3), latency=0.0, cached=True)
            else:
                tracker.record_success(model, Usage.of(i + 1, j), latency=0.25, waited=0.25, retries=1)
            if j % 50 == 0:
                snapshots.append(tracker.snapshot())  # readers race the writers

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # The expected totals, computed without the tracker.
    expected = {m: dict(requests=0, failures=0, cached=0, retries=0, prompt=0, completion=0, waited=0.0)
                for m in models}
    for i in range(threads_n):
        for j in range(calls):
            e = expected[models[(i + j) % 3]]
            e["requests"] += 1
            if j % 10 == 0:
                e["failures"] += 1
                e["retries"] += 2
                e["waited"] += 0.5
            elif j % 7 == 0:
                e["cached"] += 1
            else:
                e["retries"] += 1
                e["waited"] += 0.25
                e["prompt"] += i + 1
                e["completion"] += j

    snap = tracker.snapshot()
    for model in models:
        got, e = snap.models[model], expected[model]
        assert (got.requests, got.failures, got.cached_hits, got.retries) == (
            e["requests"], e["failures"], e["cached"], e["retries"])
        assert (got.prompt_tokens, got.completion_tokens) == (e["prompt"], e["completion"])
        assert got.waited_seconds == pytest.approx(e["waited"])
        price = PRICES.get(model)
        if price is None:
            assert got.cost is None
        else:
            assert got.cost == pytest.approx(call_cost(price, Usage.of(e["prompt"], e["completion"])))
    assert snap.total.requests == threads_n * calls
    assert snap.total.prompt_tokens == sum(e["prompt"] for e in expected.values())
    # Every snapshot taken mid-run was internally consistent.
    for s in snapshots:
        assert s.total.requests == sum(m.requests for m in s.models.values())
        assert s.total.failures <= s.total.requests


# --- usage details: cached, cache-written and reasoning tokens ----------------------------------


def test_cached_prompt_tokens_cost_the_cached_price_and_the_input_price_without_one():
    priced = ModelPrice(input_per_million=2.0, output_per_million=8.0, cached_input_per_million=0.5)
    usage = Usage.of(1_000_000, 100_000, cached_prompt_tokens=800_000, reasoning_tokens=60_000)
    # 200k uncached at 2.0 + 800k cached at 0.5 + 100k completion (reasoning included) at 8.0
    assert call_cost(priced, usage) == pytest.approx(0.4 + 0.4 + 0.8)
    assert call_cost(PRICES["gpt-4o"], usage) == call_cost(PRICES["gpt-4o"], Usage.of(1_000_000, 100_000))
    with pytest.raises(ValueError, match="cached_input_per_million must be 0 or more"):
        ModelPrice(input_per_million=1, output_per_million=1, cached_input_per_million=-1)


def test_details_are_summed_as_reported_and_unknown_adds_nothing():
    tracker = UsageTracker()
    tracker.record_success("m", Usage.of(100, 10, cached_prompt_tokens=60, reasoning_tokens=4),
                           latency=0.1)
    tracker.record_success("m", Usage.of(100, 10, cache_creation_tokens=30), latency=0.1)
    tracker.record_success("m", Usage.of(100, 10), latency=0.1)  # the provider said nothing
    total = tracker.snapshot().total
    assert (total.cached_prompt_tokens, total.cache_creation_tokens, total.reasoning_tokens) == (60, 30, 4)
    assert json.loads(json.dumps(tracker.snapshot().to_dict()))["total"]["reasoning_tokens"] == 4
    line = format_usage(tracker.snapshot())
    assert "300 prompt (60 cached, 30 written) + 30 completion (4 reasoning) tokens" in line
    assert "0 prompt + 0 completion tokens" in format_usage(UsageTracker().snapshot())  # none: not shown


def test_details_from_many_threads_add_up_exactly():
    tracker = UsageTracker(PRICES)

    def worker():
        for _ in range(200):
            tracker.record_success("gpt-4o", Usage.of(10, 5, cached_prompt_tokens=3, cache_creation_tokens=1,
                                                      reasoning_tokens=2), latency=0.0)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    total = tracker.snapshot().total
    counted = (total.requests, total.cached_prompt_tokens, total.cache_creation_tokens,
               total.reasoning_tokens)
    assert counted == (3200, 9600, 3200, 6400)


def test_the_info_line_shows_the_details(caplog):
    import logging

    from cowork_llm.client import RateLimitedLlm
    from cowork_llm.config import RateLimitConfig
    from cowork_llm.rate_limiter import RateLimiter
    from cowork_llm.results import ChatResult
    from cowork_llm.testing import MockLlm

    reply = ChatResult("ok", "m", usage=Usage.of(900, 150, cached_prompt_tokens=800, reasoning_tokens=120))
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0))
    with RateLimitedLlm(MockLlm([reply]), limiter) as llm, caplog.at_level(logging.INFO, logger="cowork_llm"):
        llm.generate_content("hi")
    limiter.close()
    assert "900+150 tokens (cached 800, reasoning 120)" in caplog.text
