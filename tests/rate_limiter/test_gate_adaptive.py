"""The gate with adaptive limits: a request's demand on the provider's learned budgets is
looked at before the configured rates (a refusal there spends no configured slot),
what an answer said reaches the view through its slot, a store that fails while an
answer is recorded does not fail the answer, and ``adaptive = false`` learns nothing.
Timing assertions are one-sided."""

import logging
import time

import pytest

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterAcquireError, LimiterBackendError
from cowork_llm.limits import DimensionReport, LimitReport
from cowork_llm.rate_limiter import RateLimiter

ONE = {"requests": 1.0}


@pytest.fixture
def make_limiter():
    made = []

    def make(**settings):
        settings.setdefault("min_interval_seconds", 0)
        limiter = RateLimiter(RateLimitConfig(**settings))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


def requests_left(remaining, limit=10, reset=60.0):
    return LimitReport("openai", (DimensionReport("requests", remaining, limit, reset),))


def test_a_slot_carries_its_demand_and_when_it_was_admitted(make_limiter):
    limiter = make_limiter()
    before = time.time()
    with limiter.slot(demand=ONE) as slot:
        after = time.time()
        assert slot.demand == ONE
        assert before <= slot.admitted_wall <= after
        assert slot.marks == {"requests": 1.0}  # the first charge on this view
    with limiter.slot() as plain:
        assert plain.demand is None and plain.marks == {}


def test_what_an_answer_said_reaches_the_view_through_its_slot(make_limiter):
    limiter = make_limiter(max_concurrent=3)
    first = limiter.acquire(demand=ONE)
    later = [limiter.acquire(demand=ONE) for _ in range(2)]  # admitted after the first
    # the first request's answer: 9 of 10 left when the provider saw it
    limiter.observe(first, requests_left(9))
    learned = limiter.limits().learned["requests"]
    assert learned.limit == 10
    assert learned.level == pytest.approx(7, abs=0.1)  # the two admitted since are counted
    for slot in (first, *later):
        slot.release()


def test_an_answer_to_a_slot_taken_without_demand_teaches_nothing(make_limiter):
    # Such a slot was never charged to the view: its answer cannot be placed in it.
    limiter = make_limiter()
    with limiter.slot() as plain:
        pass
    limiter.observe(plain, requests_left(9))
    assert limiter.limits().learned == {}


def test_a_refusal_teaches_the_gate_to_hold_everyone_until_the_reset(make_limiter):
    limiter = make_limiter(acquire_timeout_seconds=5)
    slot = limiter.acquire(demand=ONE)
    limiter.observe(slot, requests_left(0, reset=0.4), refused=True)
    slot.release()
    asked = time.monotonic()
    with limiter.slot(demand=ONE) as held:
        assert time.monotonic() - asked >= 0.35
        assert held.waited_seconds >= 0.35


def test_the_learned_budget_is_looked_at_before_a_configured_slot_is_spent(make_limiter):
    # two requests a minute configured; the provider says "nothing left for 0.4 s"
    limiter = make_limiter(requests_per_minute=2, acquire_timeout_seconds=5)
    slot = limiter.acquire(demand=ONE)
    limiter.observe(slot, requests_left(0, reset=0.4), refused=True)
    slot.release()
    # the second configured start is still there after the provider's wait (had the
    # looks at the held view spent it, the next would be a minute away: a timeout)
    with limiter.slot(demand=ONE):
        pass


def test_a_configured_limit_that_refuses_charges_nothing_to_the_learned_budget(make_limiter):
    limiter = make_limiter(requests_per_minute=1, acquire_timeout_seconds=0.3)
    slot = limiter.acquire(demand=ONE)
    limiter.observe(slot, requests_left(5, limit=100, reset=1000.0))
    slot.release()
    level = limiter.limits().learned["requests"].level
    with pytest.raises(LimiterAcquireError):
        limiter.acquire(demand=ONE)  # the configured minute refuses for 0.3 s
    assert limiter.limits().learned["requests"].level >= level


def test_adaptive_false_ignores_the_demand_and_learns_nothing(make_limiter):
    limiter = make_limiter(adaptive=False)
    with limiter.slot(demand=ONE) as slot:
        assert slot.demand is None
        limiter.observe(slot, requests_left(0, reset=600.0), refused=True)
    snapshot = limiter.limits()
    assert dict(snapshot.learned) == {} and not snapshot.adaptive
    with limiter.slot(demand=ONE):
        pass  # not held for 600 s


def test_a_store_failing_while_an_answer_is_recorded_is_logged_not_raised(make_limiter, caplog):
    limiter = make_limiter(key="flaky")
    slot = limiter.acquire(demand=ONE)

    def broken(update, *, read_only=False):
        raise LimiterBackendError("the store went away (test)")

    limiter.backend.update_provider_view = broken
    with caplog.at_level(logging.WARNING, logger="cowork_llm.rate_limiter._gate"):
        limiter.observe(slot, requests_left(3))
    slot.release()
    [record] = [r for r in caplog.records if r.name == "cowork_llm.rate_limiter._gate"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == ("rate limiter 'flaky' could not record what the provider said: "
                                   "the store went away (test)")
    with pytest.raises(LimiterBackendError):
        limiter.acquire(demand=ONE)  # the next admission says so


def test_a_report_with_a_delay_is_brought_forward(make_limiter):
    limiter = make_limiter()
    slot = limiter.acquire(demand=ONE)
    # 30 of 60 used, full in 300 s: 0.1 a second; said "30 left" 100 s ago: 10 refilled since
    limiter.observe(slot, LimitReport("openai", (DimensionReport("requests", 30, 60, 300.0),)),
                    reported_age=100.0)
    slot.release()
    assert 40 <= limiter.limits().learned["requests"].level <= 40.5


def test_usage_settles_the_estimate_through_the_slot(make_limiter):
    limiter = make_limiter()
    demand = {"requests": 1.0, "tokens": 1000.0}
    slot = limiter.acquire(demand=demand)
    # 9000 of 10000 left, full in 600 s: refilling 1.7 a second
    limiter.observe(slot, LimitReport("openai", (DimensionReport("tokens", 9000, 10000, 600.0),)))
    slot.release()
    slot = limiter.acquire(demand=demand)  # charged 1000
    limiter.observe(slot, None, used={"tokens": 100.0})  # took 100: 900 back
    slot.release()
    assert 8900 <= limiter.limits().learned["tokens"].level <= 8900 + 10


def test_pause_of_nothing_holds_nobody_and_says_nothing(make_limiter, caplog):
    limiter = make_limiter(acquire_timeout_seconds=1)
    with caplog.at_level(logging.INFO, logger="cowork_llm.rate_limiter._gate"):
        limiter.pause(0)
        limiter.pause(-5)
        with limiter.slot():
            pass
        limiter.pause(0.01)
    assert [r.getMessage() for r in caplog.records] == ["rate limiter 'default' paused for 0.01 s"]


def test_an_answer_recorded_without_an_age_is_taken_as_of_now(make_limiter):
    limiter = make_limiter()
    slot = limiter.acquire(demand=ONE)
    # 6000 a minute (100 a second), nothing left: the model must not assume time has passed
    limiter.observe(slot, LimitReport("openai", (DimensionReport("requests", 0, 6000, 60.0),)))
    slot.release()
    assert limiter.limits().learned["requests"].level < 50  # 100 would be a second's refill


def test_a_limit_learned_by_another_member_holds_one_that_has_not_looked_yet():
    # Two limiters on one store (as two processes on one sqlite file or Redis): the one
    # that has seen no learned limit skips its look before asking, but its admission
    # still checks the store and must not let the request through.
    config = RateLimitConfig(min_interval_seconds=0, acquire_timeout_seconds=0.3)
    informed = RateLimiter(config)
    unaware = RateLimiter(config, backend=informed.backend)
    with informed.slot(demand=ONE) as slot:
        pass
    informed.observe(slot, requests_left(0, reset=30.0), refused=True)
    with pytest.raises(LimiterAcquireError):
        unaware.acquire(demand=ONE)
    informed.close()
