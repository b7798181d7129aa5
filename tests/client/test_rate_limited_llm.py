"""RateLimitedLlm over MockLlm: argument checks before any slot, a slot per attempt,
429 pauses for everyone, logging without prompt text or key."""

import logging
import threading

import pytest

from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import RateLimitConfig, RetryConfig
from cowork_llm.errors import (
    AuthenticationError,
    LimiterAcquireError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.llm import Llm, prompt_hash
from cowork_llm.rate_limiter import (
    RateLimiter,
    get_global_rate_limiter,
)
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.retry import RetryPolicy
from cowork_llm.testing import MockLlm

WAIT = 5.0
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(autouse=True)
def _fresh_registry():
    _reset_global_rate_limiters()
    yield
    _reset_global_rate_limiters()


@pytest.fixture
def limiter():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0.05, acquire_timeout_seconds=2.0))
    yield limiter
    limiter.close()


def retry_policy(**settings):
    waits = []
    policy = RetryPolicy(RetryConfig(**settings), sleep=waits.append)
    return policy, waits


def test_it_is_an_llm_named_after_the_inner_one(limiter):
    inner = MockLlm()
    client = RateLimitedLlm(inner, limiter)
    assert isinstance(client, Llm) and client.name == inner.name == "mock:mock-model"
    assert client.generate_content("hi", system_prompt="be brief") == "echo: hi"
    assert inner.last_call.messages[0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat([]),
        lambda c: c.chat([{"role": "robot", "content": "x"}]),
        lambda c: c.chat(HELLO, temperature=3),
        lambda c: c.chat(HELLO, max_tokens=0),
        lambda c: c.generate_content(""),
        lambda c: c.generate_content(None),
    ],
)
def test_bad_arguments_fail_before_taking_a_slot(call):
    # The only slot is held and waiting would time out: a ValueError proves no slot was asked for.
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, acquire_timeout_seconds=0.05))
    inner = MockLlm()
    held = limiter.acquire()
    try:
        with pytest.raises(ValueError):
            call(RateLimitedLlm(inner, limiter))
    finally:
        held.release()
        limiter.close()
    assert inner.call_count == 0
    assert limiter.admitted_count == 1


def test_every_attempt_takes_a_slot_and_keeps_the_interval(limiter):
    inner = MockLlm().fail_next(ServerError("overloaded", status_code=503), times=2)
    policy, waits = retry_policy(max_attempts=5)
    client = RateLimitedLlm(inner, limiter, policy)
    assert client.chat(HELLO).content == "echo: hello there"
    assert inner.call_count == 3 and limiter.admitted_count == 3
    assert len(waits) == 2  # the policy's own backoff (recorded, not slept)
    arrivals = [call.monotonic for call in inner.calls]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 0.05 * 0.9  # retries do not skip the limiter


def test_the_global_default_limiter_is_used_when_none_is_given():
    client = RateLimitedLlm(MockLlm())
    assert client.limiter is get_global_rate_limiter("default")
    assert client.limiter.config == RateLimitConfig()


def test_a_429_with_retry_after_pauses_the_other_threads(limiter):
    inner = MockLlm()
    inner.fail_next(RateLimitError("slow down", status_code=429, retry_after=0.3))
    policy, waits = retry_policy(max_attempts=3)
    client = RateLimitedLlm(inner, limiter, policy)
    results = []
    first = threading.Thread(target=lambda: results.append(client.generate_content("one")))
    first.start()
    other = threading.Thread(target=lambda: results.append(client.generate_content("two")))
    other.start()
    first.join(WAIT)
    other.join(WAIT)
    assert sorted(results) == ["echo: one", "echo: two"]
    calls = inner.calls
    assert len(calls) == 3
    throttled_at = calls[0].monotonic
    # Everything after the 429 started no earlier than its Retry-After allowed, the
    # other thread's call included (the policy's own sleep was recorded, not slept).
    assert all(call.monotonic >= throttled_at + 0.3 for call in calls[1:])
    assert waits == [0.3]


def test_a_429_asking_too_long_fails_at_once_and_holds_nobody(limiter):
    inner = MockLlm().fail_next(RateLimitError("later", status_code=429, retry_after=600))
    policy, waits = retry_policy(max_retry_after_seconds=120)
    client = RateLimitedLlm(inner, limiter, policy)
    with pytest.raises(RateLimitError):
        client.chat(HELLO)
    assert waits == [] and inner.call_count == 1
    assert limiter.backend.pause_remaining() == 0


def test_an_exhausted_quota_does_not_pause(limiter):
    inner = MockLlm().fail_next(QuotaExceededError("no credit", status_code=429, retry_after=5))
    client = RateLimitedLlm(inner, limiter, retry_policy()[0])
    with pytest.raises(QuotaExceededError):
        client.chat(HELLO)
    assert limiter.backend.pause_remaining() == 0 and inner.call_count == 1


def test_final_failure_logs_one_error_line_without_the_prompt(limiter, caplog):
    error = AuthenticationError("bad key", status_code=401, request_id="req-42")
    inner = MockLlm().fail_next(error)
    client = RateLimitedLlm(inner, limiter, retry_policy()[0])
    with caplog.at_level(logging.INFO, logger="cowork_llm"), pytest.raises(AuthenticationError) as raised:
        client.chat(HELLO)
    assert raised.value.attempts == 1 and inner.call_count == 1  # a 401 is not retried
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    line = errors[0]
    for part in ("mock:mock-model", "AuthenticationError", "status=401", "request_id=req-42",
                 "attempts=1", prompt_hash(HELLO)):
        assert part in line
    assert "hello there" not in caplog.text


def test_exhausted_retries_log_the_attempt_count(limiter, caplog):
    inner = MockLlm().fail_next(ServerError("down", status_code=500), times=3)
    client = RateLimitedLlm(inner, limiter, retry_policy(max_attempts=3)[0])
    with caplog.at_level(logging.ERROR, logger="cowork_llm"), pytest.raises(ServerError) as raised:
        client.chat(HELLO)
    assert raised.value.attempts == 3 and limiter.admitted_count == 3
    assert "attempts=3" in caplog.records[-1].getMessage()


def test_limiter_timeout_is_logged_and_raised(caplog):
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, acquire_timeout_seconds=0.05))
    held = limiter.acquire()
    client = RateLimitedLlm(MockLlm(), limiter)
    try:
        with caplog.at_level(logging.ERROR, logger="cowork_llm"), pytest.raises(LimiterAcquireError):
            client.chat(HELLO)
    finally:
        held.release()
        limiter.close()
    assert "LimiterAcquireError" in caplog.text and prompt_hash(HELLO) in caplog.text


def test_debug_log_has_wait_and_request_time(limiter, caplog):
    client = RateLimitedLlm(MockLlm(), limiter)
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"):
        client.chat(HELLO)
    text = caplog.text
    assert "slot after" in text and "request took" in text


def test_close_closes_the_inner_client_not_the_shared_limiter(limiter):
    inner = MockLlm()
    with RateLimitedLlm(inner, limiter) as client:
        client.chat(HELLO)
    assert inner.closed and not limiter.closed
    client.close()  # twice is fine


def test_sixteen_threads_share_one_client():
    inner = MockLlm(latency_seconds=0.001)
    fast = RateLimiter(RateLimitConfig(min_interval_seconds=0.005, max_concurrent=2))
    client = RateLimitedLlm(inner, fast, retry_policy()[0])
    answers, lock = [], threading.Lock()

    def worker(i):
        for j in range(4):
            answer = client.generate_content(f"t{i}-{j}")
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 4)
    fast.close()
    assert sorted(answers) == sorted(f"echo: t{i}-{j}" for i in range(16) for j in range(4))
    arrivals = sorted(call.monotonic for call in inner.calls)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # The limiter records starts exactly one padded interval apart (tests/rate_limiter);
    # what the model sees adds each thread's wake-up delay, which varies by up to ~2 ms
    # on a busy 2-core machine (BENCHMARKS.md, "arrival gaps").
    assert min(gaps) >= 0.005 - 0.002
    assert fast.in_flight == 0 and fast.queued == 0
