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


def anthropic(**dims):
    return LimitReport("anthropic", tuple(DimensionReport(name, *values) for name, values in dims.items()))


def learn(view, report, demand=ONE, refused=False):
    _, marks = view.admit(demand)
    view.observe(report, marks=marks, demand=demand, used=None, refused=refused)


def test_a_429_with_a_reset_of_6m0s_holds_the_group_until_then(clock):
    view = make_view()
    learn(view, openai(requests=(0, 100, 360.0)), refused=True)  # x-ratelimit-reset-requests: 6m0s
    # nobody for six minutes: a waiter is told at most a minute at a time, and looks again
    assert view.wait(ONE) == 60.0
    clock.now += 300
    assert view.admit(ONE) == (60.0, {})
    clock.now += 59.9
    assert view.wait(ONE) == pytest.approx(0.1)
    clock.now += 0.1
    assert view.learned()["requests"].level == 100  # full, as the provider promised
    assert view.admit(ONE)[0] == 0.0


def test_a_429_that_leaves_room_or_names_no_reset_holds_nobody(clock):
    view = make_view()
    learn(view, openai(requests=(5, 100, 360.0)), refused=True)  # refused for its tokens, say
    assert view.admit(ONE)[0] == 0.0
    other = make_view()
    learn(other, openai(requests=(0, 60, None)), refused=True)
    assert other.wait(ONE) == pytest.approx(1.0)  # refilling at 60 a minute, not held


def test_a_success_that_reports_an_empty_bucket_is_not_a_hold(clock):
    view = make_view()
    learn(view, openai(requests=(0, 60, 60.0)))
    assert view.wait(ONE) == pytest.approx(1.0)  # the refill: one a second, not 60 s


def test_a_request_larger_than_the_whole_bucket_waits_for_a_full_bucket_not_forever(clock):
    view = make_view()
    learn(view, openai(tokens=(0, 6000, 60.0)), demand={"tokens": 0.0})
    # 100 a second; 9000 tokens can never fit 6000: it waits until the bucket is full
    assert view.wait({"tokens": 9000}) == pytest.approx(60.0)
    clock.now += 60
    assert view.admit({"tokens": 9000})[0] == 0.0
    assert view.learned()["tokens"].level == pytest.approx(-3000)  # the provider decides


def test_an_unknown_refill_waits_a_minute_at_most(clock):
    view = make_view()
    learn(view, openai(tokens=(10, 100_000_000, None)), demand={"tokens": 0.0})
    # a huge day-long budget refilling at its per-minute share still answers within a minute
    assert 0 < view.wait({"tokens": 50_000_000}) <= 60.0


def test_a_dimension_the_request_does_not_use_does_not_hold_it(clock):
    view = make_view()
    learn(view, openai(requests=(50, 60, 10.0), tokens=(0, 1000, 60.0)), demand={"requests": 1.0})
    assert view.wait({"requests": 1.0, "tokens": 0.0}) == 0.0
    assert view.wait({"requests": 1.0, "tokens": 1.0}) > 0
    assert view.wait({"requests": 1.0, "input_tokens": 10**9}) == 0.0  # never reported


def test_a_bucket_with_exactly_enough_admits(clock):
    view = make_view()
    learn(view, openai(tokens=(1000, 1000, None)), demand={"tokens": 0.0})
    assert view.admit({"tokens": 1000.0})[0] == 0.0
    assert view.wait({"tokens": 1.0}) > 0


def test_the_refill_never_overfills_the_bucket(clock):
    view = make_view()
    learn(view, openai(requests=(50, 60, 10.0)))
    clock.now += 3600
    assert view.learned()["requests"].level == 60
    for _ in range(60):
        assert view.admit(ONE)[0] == 0.0
    assert view.wait(ONE) > 0


def test_refill_rates_as_each_provider_documents_them(clock):
    view = make_view()
    # Anthropic: a per-minute bucket refilling continuously, whatever the reset says
    learn(view, anthropic(requests=(10, 50, 3.0)))
    assert view.learned()["requests"].refill_per_second == pytest.approx(50 / 60)
    view = make_view()
    # OpenAI family, a full bucket (nothing to derive a rate from): the per-minute share
    learn(view, openai(requests=(60, 60, 0.0)))
    assert view.learned()["requests"].refill_per_second == pytest.approx(1.0)
    # then a report without a reset keeps the rate learned before
    learn(view, openai(requests=(14370, 14400, 179.56)))
    learn(view, openai(requests=(14000, 14400, None)))
    assert view.learned()["requests"].refill_per_second == pytest.approx(30 / 179.56)


def test_azure_remaining_only_headers_are_modelled_with_the_largest_remaining_seen(clock):
    view = make_view()
    learn(view, openai(requests=(99, None, None)))
    learned = view.learned()["requests"]
    assert learned.limit is None and learned.level == pytest.approx(99)
    assert learned.refill_per_second == pytest.approx(99 / 60)
    learn(view, openai(requests=(40, None, None)))
    assert view.learned()["requests"].level == pytest.approx(40)
    clock.now += 3600
    assert view.learned()["requests"].level == pytest.approx(99)  # the capacity stays 99


def test_an_empty_report_of_a_dimension_never_seen_teaches_nothing(clock):
    view = make_view()
    learn(view, openai(requests=(0, None, None)))
    assert view.learned() == {} and view.wait(ONE) == 0.0


def test_anthropic_rounding_slack_corrects_tokens_only_when_far_off(clock):
    view = make_view()
    demand = {"requests": 1.0, "tokens": 100.0}
    learn(view, anthropic(requests=(49, 50, 1.0), tokens=(40000, 40000, 0.0)), demand=demand)
    level = view.learned()["tokens"].level
    # 39,600 left "rounded to the nearest thousand" is within 500 of the model: no change
    learn(view, anthropic(requests=(48, 50, 1.0), tokens=(39600 - 100, 40000, 1.0)), demand=demand)
    assert view.learned()["tokens"].level == pytest.approx(level - 100, abs=1)
    # 38,000 is more than 500 below the model's 39,800: the model was wrong; it comes
    # down to the highest level the rounded report allows (38,000 + 500)
    learn(view, anthropic(requests=(47, 50, 1.0), tokens=(38000, 40000, 1.0)), demand=demand)
    assert view.learned()["tokens"].level == pytest.approx(38500)
    # requests are exact counts: no slack
    assert view.learned()["requests"].level == pytest.approx(47, abs=0.1)


def test_the_openai_family_has_no_rounding_slack(clock):
    view = make_view()
    demand = {"tokens": 100.0}
    learn(view, openai(tokens=(40000, 40000, None)), demand=demand)
    learn(view, openai(tokens=(39700, 40000, 1.0)), demand=demand)
    assert view.learned()["tokens"].level == pytest.approx(39700, abs=1)


def test_a_tier_upgrade_replaces_the_model_at_once(clock):
    view = make_view()
    learn(view, openai(requests=(0, 60, 60.0)))
    assert view.wait(ONE) > 0
    learn(view, openai(requests=(499, 500, 0.12)))
    learned = view.learned()["requests"]
    assert learned.limit == 500 and learned.level == pytest.approx(499)
    assert learned.limit_learned_at == clock.now
    clock.now += 10
    learn(view, openai(requests=(498, 500, 0.24)))
    assert view.learned()["requests"].limit_learned_at == clock.now - 10  # unchanged limit


def test_a_report_that_took_long_to_reach_the_limiter_counts_the_refill_since(clock):
    view = make_view()
    learn(view, openai(requests=(30, 60, 30.0)))  # one a second
    _, marks = view.admit(ONE)
    learned = view.learned()["requests"].level
    # headers that arrived 5 s ago said 20 left; 5 refilled since
    view.observe(openai(requests=(20, 60, 40.0)), marks=marks, demand=ONE, used=None,
                 reported_age=5.0)
    assert view.learned()["requests"].level == pytest.approx(25)
    assert learned > 25
    # a negative age (clock trouble) is not a report from the future
    _, marks = view.admit(ONE)
    view.observe(openai(requests=(10, 60, 50.0)), marks=marks, demand=ONE, used=None,
                 reported_age=-5.0)
    assert view.learned()["requests"].level == pytest.approx(10)


def test_settlement_only_touches_the_dimensions_the_request_was_charged_for(clock):
    view = make_view()
    demand = demand_for(prompt_tokens=100, max_tokens=900)
    learn(view, anthropic(input_tokens=(40000, 40000, 0.0), output_tokens=(8000, 8000, 0.0)),
          demand={"input_tokens": 0.0, "output_tokens": 0.0})
    _, marks = view.admit({"output_tokens": 900.0})
    view.observe(None, marks=marks, demand={"output_tokens": 900.0},
                 used={"input_tokens": 100.0, "output_tokens": 50.0, "tokens": 150.0})
    learned = view.learned()
    assert learned["output_tokens"].level == pytest.approx(8000 - 50)
    assert learned["input_tokens"].level == pytest.approx(40000)  # never charged: not settled
    assert demand["tokens"] == 1000


def test_a_refund_never_overfills_the_bucket(clock):
    view = make_view()
    learn(view, openai(tokens=(1000, 1000, None)), demand={"tokens": 0.0})
    _, marks = view.admit({"tokens": 500.0})
    clock.now += 120  # refilled to full meanwhile
    view.observe(None, marks=marks, demand={"tokens": 500.0}, used={"tokens": 10.0})
    assert view.learned()["tokens"].level == 1000


def test_settlement_without_a_report_still_counts(clock):
    view = make_view()
    learn(view, openai(tokens=(1000, 1000, None)), demand={"tokens": 0.0})
    _, marks = view.admit({"tokens": 500.0})
    view.observe(None, marks=marks, demand={"tokens": 500.0}, used=None)  # no usage, no report
    assert view.learned()["tokens"].level == pytest.approx(500)  # the estimate stands


def test_even_pace_spreads_token_heavy_starts_by_their_size(clock):
    view = make_view(pace="even")
    learn(view, openai(tokens=(60000, 60000, None)), demand={"tokens": 0.0})  # 1000 a second
    assert view.admit({"tokens": 500.0})[0] == 0.0
    assert view.admit({"tokens": 500.0})[0] == pytest.approx(0.5)
    clock.now += 0.5
    assert view.admit({"tokens": 500.0})[0] == 0.0
    clock.now += 10  # an idle spell does not bank starts
    assert view.admit({"tokens": 500.0})[0] == 0.0
    assert view.admit({"tokens": 500.0})[0] == pytest.approx(0.5)


def test_bucket_pace_lets_a_fresh_budget_go_at_once(clock):
    view = make_view()
    learn(view, openai(requests=(599, 600, 0.1)))
    assert all(view.admit(ONE)[0] == 0.0 for _ in range(100))


def test_even_pace_survives_a_new_report(clock):
    view = make_view(pace="even")
    learn(view, openai(requests=(599, 600, 0.1)))
    learn(view, openai(requests=(598, 600, 0.2)))  # admitted at once: the first start after a report
    assert view.admit(ONE)[0] == pytest.approx(0.1)


def test_the_info_line_for_a_limit_that_is_not_a_whole_number_or_not_known(clock, caplog):
    caplog.set_level(logging.INFO, logger="cowork_llm.rate_limiter._provider_view")
    view = make_view(key="azure")
    learn(view, openai(requests=(99, None, None)))
    learn(view, openai(tokens=(10, 12.5, None)), demand={"tokens": 0.0})
    learn(view, openai(requests=(99, 1e400, None)))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["rate limiter 'azure' learned the provider's requests limit: unknown",
                     "rate limiter 'azure' learned the provider's tokens limit: 12.5",
                     "rate limiter 'azure' learned the provider's requests limit: inf"]  # known at last


def test_adaptive_false_shows_no_learned_limits(clock):
    view = make_view(adaptive=False)
    learn(view, openai(requests=(50, 60, 10.0)))
    assert dict(view.snapshot().learned) == {} and not view.snapshot().adaptive


def test_the_snapshot_carries_every_configured_value(clock):
    view = make_view(key="team", max_concurrent=3, tokens_per_minute=5000, pace="even")
    snapshot = view.snapshot()
    assert (snapshot.key, snapshot.max_concurrent, snapshot.tokens_per_minute, snapshot.pace,
            snapshot.min_interval_seconds, snapshot.requests_per_minute) == ("team", 3, 5000, "even", 0, None)


def test_a_learned_level_refills_as_time_passes(clock):
    view = make_view()
    learn(view, openai(requests=(0, 60, 60.0)))
    clock.now += 30
    learned = view.learned()["requests"]
    assert learned.level == pytest.approx(30) and learned.learned_at == clock.now - 30


def test_until_something_is_learned_a_process_local_view_is_not_consulted(clock):
    config = RateLimitConfig(min_interval_seconds=0)
    backend = MemoryBackend(config)
    view = ProviderView(config, backend)
    looked = []
    real = backend.update_provider_view
    backend.update_provider_view = lambda update, **kw: looked.append(1) or real(update, **kw)
    assert view.wait(ONE) == 0.0 and looked == []
    view.observe(None, marks={}, demand=ONE, used=None)  # an answer without headers or usage
    assert looked == []
    learn(view, openai(requests=(0, 60, 60.0)))
    looked.clear()
    assert view.wait(ONE) > 0 and looked == [1]


def test_a_limit_another_member_learned_holds_the_next_admission_of_one_that_had_not_looked(clock):
    # Two members of one store (processes sharing a sqlite file or a Redis). While a
    # member has seen no learned limit it skips the separate look before asking the
    # rates (a store round trip per ask); its admission still checks, atomically.
    config = RateLimitConfig(min_interval_seconds=0)
    backend = MemoryBackend(config)
    informed, unaware = ProviderView(config, backend), ProviderView(config, backend)
    _, marks = informed.admit(ONE)
    assert unaware.admit(ONE)[0] == 0.0  # nothing learned anywhere yet
    # The provider refused one of informed's requests: 60 a minute, none left, 30 s to go.
    informed.observe(openai(requests=(0, 60, 30.0)), marks=marks, demand=ONE, used=None,
                     refused=True)
    assert unaware.wait(ONE) == 0.0  # it has not looked since...
    wait, marks = unaware.admit(ONE)
    assert wait == pytest.approx(30.0) and marks == {}  # ...but nothing gets past admit
    assert unaware.wait(ONE) == pytest.approx(30.0)  # and it looks from now on


def test_a_request_admitted_before_any_limit_was_learned_refunds_nothing_into_one(clock):
    # Its estimate was charged to no learned budget (there was none), so its real usage
    # must not be "refunded" into the budget another member learned meanwhile.
    config = RateLimitConfig(min_interval_seconds=0)
    backend = MemoryBackend(config)
    early, informed = ProviderView(config, backend), ProviderView(config, backend)
    demand = {"tokens": 500.0}
    _, early_marks = early.admit(demand)
    _, marks = informed.admit(demand)
    informed.observe(openai(tokens=(100, 1000, 60.0)), marks=marks, demand=demand, used=None)
    early.observe(None, marks=early_marks, demand=demand, used={"tokens": 10.0})
    assert informed.learned()["tokens"].level < 150  # 100 left, not 100 + 490


def test_a_late_answer_showing_no_room_does_not_lift_a_429s_hold(clock):
    view = make_view()
    _, earlier = view.admit(ONE)  # in flight when the next one is refused
    _, refused = view.admit(ONE)
    view.observe(openai(requests=(0, 100, 360.0)), marks=refused, demand=ONE, used=None,
                 refused=True)
    clock.now += 1
    # the earlier request's answer arrives: 0 left, full in 5m59s; nothing new
    view.observe(openai(requests=(0, 100, 359.0)), marks=earlier, demand=ONE, used=None)
    assert view.wait(ONE) == 60.0
    clock.now += 358.9
    assert view.wait(ONE) == pytest.approx(0.1)


def test_an_answer_showing_room_ends_a_429s_hold(clock):
    view = make_view()
    _, marks = view.admit(ONE)
    view.observe(openai(requests=(0, 100, 360.0)), marks=marks, demand=ONE, used=None,
                 refused=True)
    _, marks = view.admit({"requests": 0.0})  # e.g. an answer to a call the limiter let through
    view.observe(openai(requests=(3, 100, 300.0)), marks=marks, demand=ONE, used=None)
    # the model never rises on a report, but it refills again: 97 in 300 s, one in ~3 s
    assert view.wait(ONE) == pytest.approx(300 / 97)


def test_a_long_prompt_waits_for_anthropics_input_budget(clock):
    view = make_view()
    learn(view, anthropic(input_tokens=(20000, 40000, 30.0)), demand={"input_tokens": 0.0})
    assert demand_for(prompt_tokens=30000, max_tokens=10) == {
        "requests": 1.0, "tokens": 30010.0, "input_tokens": 30000.0, "output_tokens": 10.0}
    # 10,000 short, refilling 40,000 a minute: 15 s
    assert view.wait(demand_for(prompt_tokens=30000, max_tokens=10)) == pytest.approx(15.0)


def test_a_request_that_takes_nothing_from_a_dimension_keeps_its_even_pacing(clock):
    view = make_view(pace="even")
    learn(view, openai(tokens=(60000, 60000, None)), demand={"tokens": 0.0})  # 1000 a second
    assert view.admit({"tokens": 500.0})[0] == 0.0
    assert view.admit({"tokens": 0.0})[0] == 0.0  # nothing from the token budget: not paced
    assert view.admit({"tokens": 500.0})[0] == pytest.approx(0.5)  # still half a second
