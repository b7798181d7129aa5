"""The provider view: the model of the provider's buckets learned from its headers
(admission, the late-response rule, settlement, refusals, even pacing, the INFO line),
on the process-local store; and the same updates hammered from many threads."""

import logging
import threading

import pytest

from cowork_llm.config import RateLimitConfig
from cowork_llm.limits import DimensionReport, LimitReport
from cowork_llm.rate_limiter._provider_view import ProviderView, demand_for, used_by
from cowork_llm.rate_limiter.backends import _provider_store as store_module
from cowork_llm.rate_limiter.backends.memory import MemoryBackend
from cowork_llm.results import Usage


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(store_module.time, "time", clock)  # the memory store's clock
    return clock


def make_view(**settings):
    config = RateLimitConfig(min_interval_seconds=0, **settings)
    return ProviderView(config, MemoryBackend(config))


def openai(requests=None, tokens=None):
    dims = []
    if requests is not None:
        dims.append(DimensionReport("requests", *requests))
    if tokens is not None:
        dims.append(DimensionReport("tokens", *tokens))
    return LimitReport("openai", tuple(dims))


ONE = {"requests": 1.0}


def test_nothing_learned_admits_at_once(clock):
    view = make_view()
    assert view.wait(ONE) == 0.0
    assert view.admit(ONE) == (0.0, {"requests": 1.0})


def test_a_report_limits_admission_until_the_refill(clock):
    view = make_view()
    wait, marks = view.admit(ONE)
    # 60 a minute, 1 left after this request, full again in 59 s: refills 1 a second.
    view.observe(openai(requests=(1, 60, 59.0)), marks=marks, demand=ONE, used=None)
    assert view.admit(ONE)[0] == 0.0  # the last one
    assert view.wait(ONE) == pytest.approx(1.0)
    clock.now += 0.5
    assert view.wait(ONE) == pytest.approx(0.5)
    clock.now += 0.5
    assert view.admit(ONE)[0] == 0.0


def test_requests_admitted_after_a_response_was_sent_are_subtracted_from_its_report(clock):
    view = make_view()
    _, first = view.admit(ONE)
    for _ in range(5):  # admitted after the first, not yet seen by the provider when it answered
        view.admit(ONE)
    view.observe(openai(requests=(9, 10, 1.0)), marks=first, demand=ONE, used=None)
    learned = view.learned()["requests"]
    assert learned.level == pytest.approx(4)


def test_a_late_report_never_raises_the_level_above_the_model(clock):
    view = make_view()
    _, a = view.admit(ONE)
    _, b = view.admit(ONE)
    view.observe(openai(requests=(2, 10, 10.0)), marks=b, demand=ONE, used=None)
    assert view.learned()["requests"].level == pytest.approx(2)
    for _ in range(2):
        view.admit(ONE)
    # a's response arrives last, saying 3 left (true when a arrived): stale, ignored upward
    view.observe(openai(requests=(3, 10, 10.0)), marks=a, demand=ONE, used=None)
    assert view.learned()["requests"].level == pytest.approx(0)


def test_the_refill_rate_comes_from_the_reset_never_above_limit_per_minute(clock):
    view = make_view()
    _, marks = view.admit(ONE)
    # Groq: 14400 requests a day, 30 used, full again in 179.56 s -> 30/179.56 a second
    view.observe(openai(requests=(14370, 14400, 179.56)), marks=marks,
                 demand=ONE, used=None)
    assert view.learned()["requests"].refill_per_second == pytest.approx(30 / 179.56)
    view.observe(openai(requests=(0, 60, 0.5)), marks=marks, demand=ONE, used=None)
    assert view.learned()["requests"].refill_per_second == pytest.approx(1.0)  # 60/min, not 120/s


def test_a_refusal_with_nothing_left_holds_until_the_reset_then_all_is_back(clock):
    view = make_view()
    _, marks = view.admit(ONE)
    view.observe(openai(requests=(0, 60, 3.0)), marks=marks, demand=ONE,
                 used=None, refused=True)
    assert view.wait(ONE) == pytest.approx(3.0)
    clock.now += 2.9
    assert view.admit(ONE)[0] == pytest.approx(0.1)
    clock.now += 0.1
    for _ in range(60):
        assert view.admit(ONE)[0] == 0.0
    assert view.wait(ONE) > 0


def test_settlement_refunds_the_overestimate_and_charges_the_underestimate(clock):
    view = make_view()
    demand = demand_for(prompt_tokens=100, max_tokens=900)
    _, marks = view.admit(demand)
    view.observe(openai(requests=(59, 60, 1.0), tokens=(9000, 10000, 6.0)),
                 marks=marks, demand=demand, used=None)
    assert view.learned()["tokens"].level == pytest.approx(9000)
    _, marks = view.admit(demand)
    assert view.learned()["tokens"].level == pytest.approx(8000)
    view.observe(None, marks=marks, demand=demand,
                 used=used_by(Usage.of(120, 80)))
    assert view.learned()["tokens"].level == pytest.approx(10000 - 1000 - 200)
    _, marks = view.admit(demand)
    view.observe(None, marks=marks, demand=demand,
                 used=used_by(Usage.of(100, 1500)))  # more than estimated: charged
    assert view.learned()["tokens"].level == pytest.approx(8800 - 1600)


def test_cached_prompt_tokens_do_not_count_as_input():
    usage = Usage.of(1000, 10, cached_prompt_tokens=800, cache_creation_tokens=150)
    # Anthropic counts cache writes toward its input limit, cache reads not
    assert used_by(usage) == {"tokens": 1010, "input_tokens": 200, "output_tokens": 10}
    assert used_by(Usage.of(1000, 10))["input_tokens"] == 1000  # no detail: all of it
    assert used_by(None) is None


def test_anthropic_input_and_output_are_separate_budgets(clock):
    view = make_view()
    demand = demand_for(prompt_tokens=100, max_tokens=500)
    _, marks = view.admit(demand)
    view.observe(LimitReport("anthropic", (DimensionReport("input_tokens", 40000, 40000, 0.0),
                                           DimensionReport("output_tokens", 400, 8000, 57.0))),
                 marks=marks, demand=demand, used=None)
    # 500 output tokens do not fit 400 (+ the 500 of rounding slack is only for corrections)
    assert view.wait(demand) == pytest.approx(100 / (8000 / 60))
    assert view.wait({"input_tokens": 30000}) == 0.0


def test_even_pace_spreads_starts(clock):
    view = make_view(pace="even")
    _, marks = view.admit(ONE)
    view.observe(openai(requests=(599, 600, 0.1)), marks=marks, demand=ONE, used=None)
    assert view.admit(ONE)[0] == 0.0
    assert view.admit(ONE)[0] == pytest.approx(0.1)  # 600 a minute: one every 100 ms
    clock.now += 0.1
    assert view.admit(ONE)[0] == 0.0


def test_one_info_line_when_a_limit_appears_or_changes(clock, caplog):
    caplog.set_level(logging.INFO, logger="cowork_llm.rate_limiter._provider_view")
    view = make_view()
    for limit in (60, 60, 60, 120):
        _, marks = view.admit(ONE)
        view.observe(openai(requests=(limit - 1, limit, 1.0)), marks=marks,
                     demand=ONE, used=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.rate_limiter._provider_view"]
    assert lines == ["rate limiter 'default' learned the provider's requests limit: 60",
                     "rate limiter 'default': the provider's requests limit changed from 60 to 120"]


def test_snapshot_is_frozen_and_says_what_was_configured(clock):
    view = make_view(requests_per_minute=100)
    _, marks = view.admit(ONE)
    view.observe(openai(requests=(50, 60, 10.0)), marks=marks, demand=ONE, used=None)
    snapshot = view.snapshot()
    assert snapshot.requests_per_minute == 100 and snapshot.adaptive and snapshot.pace == "bucket"
    learned = snapshot.learned["requests"]
    assert (learned.limit, learned.learned_at, learned.limit_learned_at) == (60, clock.now, clock.now)
    with pytest.raises(AttributeError):
        learned.limit = 5
    with pytest.raises(TypeError):
        snapshot.learned["tokens"] = learned  # the mapping is read-only too
    assert "learned requests: limit 60, about 50 left" in str(snapshot)


def test_many_threads_admitting_and_observing_never_overspend():
    view = make_view()
    _, marks = view.admit(ONE)
    view.observe(openai(requests=(199, 200, 60.0)), marks=marks, demand=ONE,
                 used=None)
    admitted, lock = [], threading.Lock()

    def worker():
        for _ in range(100):
            wait, marks = view.admit(ONE)
            if wait == 0:
                with lock:
                    admitted.append(1)
                view.observe(openai(requests=(150, 200, 60.0)), marks=marks,
                             demand=ONE, used=None)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # 199 left; the late reports (150 left) can only lower it; the refill over the test
    # (200 a minute) adds a few at most.
    assert 150 <= len(admitted) <= 199 + 10
