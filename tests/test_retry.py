"""cowork_llm.retry: what is retried, how long it waits, when it gives up. Sleeps are
recorded, never slept."""

import logging
import threading
import types

import pytest
import tenacity

from cowork_llm.config import RetryConfig
from cowork_llm.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    LimiterAcquireError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.retry import RetryPolicy, describe_error, is_retryable


class Script:
    """A callable that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(sleeps=None, **config):
    recorded = [] if sleeps is None else sleeps
    return RetryPolicy(RetryConfig(**config), sleep=recorded.append), recorded


def call(retry_policy, fn, **kwargs):
    return retry_policy.call(fn, model="gpt-x", prompt_hash="abc123def456", **kwargs)


RETRYABLE = [ServerError("boom", status_code=503), RateLimitError("slow", status_code=429),
             ApiConnectionError("reset"), ApiTimeoutError("timed out")]
NOT_RETRYABLE = [BadRequestError("bad", status_code=400), BadRequestError("bad", status_code=422),
                 AuthenticationError("who", status_code=401), AuthenticationError("no", status_code=403),
                 NotFoundError("where", status_code=404), QuotaExceededError("broke", status_code=429),
                 InvalidResponseError("junk", status_code=200)]


@pytest.mark.parametrize("error", RETRYABLE, ids=repr)
def test_retryable_errors(error):
    assert is_retryable(error)


OTHER = [ValueError("x"), ConfigError("x"), LimiterAcquireError("x"), KeyboardInterrupt()]


@pytest.mark.parametrize("error", NOT_RETRYABLE + OTHER, ids=repr)
def test_not_retryable_errors(error):
    assert not is_retryable(error)


def test_success_at_once_does_not_sleep():
    retry_policy, sleeps = policy()
    fn = Script()
    assert call(retry_policy, fn) == "ok"
    assert fn.calls == 1 and sleeps == []


@pytest.mark.parametrize("error", RETRYABLE, ids=repr)
def test_retryable_error_then_success(error):
    retry_policy, sleeps = policy(initial_wait_seconds=0.5)
    fn = Script(error, error)
    assert call(retry_policy, fn) == "ok"
    assert fn.calls == 3 and len(sleeps) == 2


@pytest.mark.parametrize("error", NOT_RETRYABLE, ids=repr)
def test_not_retryable_error_is_raised_at_once_with_one_attempt(error):
    retry_policy, sleeps = policy()
    fn = Script(error)
    with pytest.raises(type(error)) as info:
        call(retry_policy, fn)
    assert info.value is error and error.attempts == 1
    assert fn.calls == 1 and sleeps == []


@pytest.mark.parametrize("error", [ValueError("bad prompt"), ConfigError("bad config"), KeyError("x")])
def test_other_exceptions_pass_through_unchanged(error):
    retry_policy, sleeps = policy()
    fn = Script(error)
    with pytest.raises(type(error)) as info:
        call(retry_policy, fn)
    assert info.value is error and fn.calls == 1 and sleeps == []


def test_keyboard_interrupt_is_not_retried():
    retry_policy, sleeps = policy()
    fn = Script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        call(retry_policy, fn)
    assert fn.calls == 1 and sleeps == []


def test_exhausted_retries_raise_the_last_error_itself():
    errors = [ServerError(f"boom {i}", status_code=500 + i) for i in range(3)]
    retry_policy, sleeps = policy(max_attempts=3)
    with pytest.raises(ServerError) as info:
        call(retry_policy, Script(*errors))
    assert info.value is errors[-1]
    assert info.value.attempts == 3 and "after 3 attempts" in str(info.value)
    assert len(sleeps) == 2


def test_retry_after_is_the_wait():
    retry_policy, sleeps = policy()
    fn = Script(RateLimitError("slow", status_code=429, retry_after=7.0),
                ServerError("busy", status_code=503, retry_after=0.0))
    assert call(retry_policy, fn) == "ok"
    assert sleeps == [7.0, 0.0]


def test_retry_after_above_the_limit_fails_at_once():
    retry_policy, sleeps = policy(max_retry_after_seconds=60)
    error = RateLimitError("come back tomorrow", status_code=429, retry_after=600.0)
    with pytest.raises(RateLimitError) as info:
        call(retry_policy, Script(error))
    assert info.value is error and error.attempts == 1 and sleeps == []


def test_retry_after_above_the_limit_fails_at_once_even_when_the_total_timeout_allows_it():
    # 100 s fits in the 300 s total budget: only max_retry_after_seconds stops it.
    retry_policy, sleeps = policy(max_retry_after_seconds=60, total_timeout_seconds=300)
    error = ServerError("maintenance", status_code=503, retry_after=100.0)
    fn = Script(error)
    with pytest.raises(ServerError) as info:
        call(retry_policy, fn)
    assert info.value is error and fn.calls == 1 and sleeps == []


def test_retry_after_at_the_limit_is_honoured():
    retry_policy, sleeps = policy(max_retry_after_seconds=60)
    assert call(retry_policy, Script(RateLimitError("slow", retry_after=60.0))) == "ok"
    assert sleeps == [60.0]


def test_backoff_grows_exponentially_with_jitter_up_to_the_maximum():
    retry_policy, sleeps = policy(max_attempts=6, initial_wait_seconds=1.0, max_wait_seconds=5.0)
    with pytest.raises(ServerError):
        call(retry_policy, Script(*[ServerError("boom", status_code=500)] * 6))
    assert len(sleeps) == 5
    for n, wait in enumerate(sleeps, start=1):
        base = min(5.0, 2.0 ** (n - 1))
        assert base <= wait <= min(5.0, base + 1.0), (n, wait)


def test_backoff_is_jittered():
    retry_policy, sleeps = policy(initial_wait_seconds=1.0)
    for _ in range(20):
        call(retry_policy, Script(ApiConnectionError("reset")))
    assert len(sleeps) == 20 and len(set(sleeps)) > 10


def test_total_timeout_stops_before_a_wait_that_would_overrun_it():
    retry_policy, sleeps = policy(total_timeout_seconds=5.0)
    error = RateLimitError("slow", status_code=429, retry_after=10.0)
    with pytest.raises(RateLimitError) as info:
        call(retry_policy, Script(error))
    assert info.value.attempts == 1 and sleeps == []


def test_total_timeout_counts_time_spent(monkeypatch):
    # A fake clock that only the sleeps and the attempts move: 1 s per attempt, 2 s
    # per wait, 10 s budget. Attempts start at 0, 3, 6 and 9 s; after the fourth
    # (ending at 10 s) the next wait would end past the budget: stop.
    clock = {"now": 1000.0}
    monkeypatch.setattr(tenacity, "time", types.SimpleNamespace(monotonic=lambda: clock["now"]))

    def sleep(seconds):
        clock["now"] += seconds

    retry_policy = RetryPolicy(RetryConfig(max_attempts=100, total_timeout_seconds=10.0), sleep=sleep)
    calls = []

    def fn():
        calls.append(clock["now"])
        clock["now"] += 1.0
        raise ServerError("busy", status_code=503, retry_after=2.0)

    with pytest.raises(ServerError) as info:
        call(retry_policy, fn)
    assert calls == [1000.0, 1003.0, 1006.0, 1009.0]
    assert info.value.attempts == 4


def test_warning_before_each_sleep(caplog):
    caplog.set_level(logging.WARNING, logger="cowork_llm")
    retry_policy, _ = policy(max_attempts=4)
    fn = Script(ServerError("boom", status_code=503, retry_after=2.0),
                ApiConnectionError("reset", retry_after=1.0))
    call(retry_policy, fn)
    messages = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.retry"]
    assert messages == [
        "attempt 1 of 4 failed: ServerError 503; retrying in 2.00s (model=gpt-x, prompt=abc123def456)",
        "attempt 2 of 4 failed: ApiConnectionError; retrying in 1.00s (model=gpt-x, prompt=abc123def456)",
    ]


def test_on_retry_sees_each_error_and_wait_before_the_sleep():
    events = []
    retry_policy = RetryPolicy(RetryConfig(), sleep=lambda s: events.append(("sleep", s)))
    first, second = RateLimitError("a", retry_after=3.0), ServerError("b", retry_after=4.0)
    call(retry_policy, Script(first, second), on_retry=lambda e, w: events.append((e, w)))
    assert events == [(first, 3.0), ("sleep", 3.0), (second, 4.0), ("sleep", 4.0)]


def test_describe_error():
    assert describe_error(ServerError("x", status_code=529)) == "ServerError 529"
    assert describe_error(ApiTimeoutError("x")) == "ApiTimeoutError"


def test_nested_calls_in_one_thread_keep_their_own_state():
    retry_policy, sleeps = policy(max_attempts=3)
    inner_results = []

    def outer():
        inner_results.append(call(retry_policy, Script(ApiTimeoutError("inner"))))
        raise ServerError("outer", status_code=500)

    with pytest.raises(ServerError) as info:
        call(retry_policy, outer)
    assert info.value.attempts == 3
    assert inner_results == ["ok"] * 3
    assert len(sleeps) == 3 * 1 + 2  # one inner retry per outer attempt, two outer retries


def test_one_policy_shared_by_many_threads():
    threads_count, max_attempts = 16, 4
    barrier = threading.Barrier(threads_count)
    lock = threading.Lock()
    sleeps_by_thread = {}

    def sleep(seconds):
        with lock:
            sleeps_by_thread.setdefault(threading.get_ident(), []).append(seconds)
            first = len(sleeps_by_thread[threading.get_ident()]) == 1
        if first:
            barrier.wait(timeout=10)  # every thread is between attempts at the same time

    retry_policy = RetryPolicy(RetryConfig(max_attempts=max_attempts), sleep=sleep)
    outcomes, retries = {}, {}

    def work(i):
        failures = 1 + i % 5  # 1..3 succeed on a later attempt, 4 and 5 exhaust the attempts
        errors = [ServerError(f"t{i}", status_code=500, retry_after=float(i)) for _ in range(failures)]
        seen = []  # what this call's on_retry saw: must be this thread's errors only
        try:
            result = call(retry_policy, Script(*errors), on_retry=lambda e, w: seen.append((e.message, w)))
            outcomes[i] = ("ok", result, len(sleeps_by_thread[threading.get_ident()]))
        except ServerError as error:
            outcomes[i] = ("failed", error.message, error.attempts,
                           sleeps_by_thread[threading.get_ident()])
        retries[i] = seen

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(threads_count):
        failures = 1 + i % 5
        if failures < max_attempts:
            assert outcomes[i] == ("ok", "ok", failures), i
        else:
            assert outcomes[i] == ("failed", f"t{i}", max_attempts, [float(i)] * (max_attempts - 1)), i
        assert retries[i] == [(f"t{i}", float(i))] * min(failures, max_attempts - 1), i


# --- found by mutation testing (TESTING.md) -------------------------------------------------


def test_a_401_for_one_key_of_a_rotation_is_retried_at_once():
    from cowork_llm.errors import KeyRejectedError

    rejected = KeyRejectedError("401; retrying with the next API key", status_code=401,
                                retry_after=0.0)
    assert is_retryable(rejected)
    retry_policy, sleeps = policy()
    assert call(retry_policy, Script(rejected)) == "ok"
    assert sleeps == [0.0]


def test_describe_error_of_an_exception_without_a_status():
    assert describe_error(ValueError("x")) == "ValueError"


def test_backoff_starts_at_initial_wait_and_jitters_by_at_most_that():
    retry_policy, sleeps = policy(max_attempts=5, initial_wait_seconds=0.25, max_wait_seconds=60)
    with pytest.raises(ApiConnectionError):
        call(retry_policy, Script(*[ApiConnectionError("reset")] * 5))
    for n, wait in enumerate(sleeps, start=1):
        base = 0.25 * 2 ** (n - 1)  # 0.25, 0.5, 1, 2
        assert base <= wait <= base + 0.25, (n, wait)


def test_a_prompt_hash_given_as_a_function_is_logged_as_its_value(caplog):
    caplog.set_level(logging.WARNING, logger="cowork_llm")
    retry_policy, _ = policy()
    asked = []

    def lazy_hash():
        asked.append(1)
        return "feedbeef0123"

    retry_policy.call(Script(ServerError("boom", status_code=500, retry_after=0.0)),
                      model="gpt-x", prompt_hash=lazy_hash)
    messages = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.retry"]
    assert messages == ["attempt 1 of 5 failed: ServerError 500; retrying in 0.00s "
                        "(model=gpt-x, prompt=feedbeef0123)"]
    assert asked == [1]


def test_refusing_a_long_retry_after_says_why_in_the_log(caplog):
    caplog.set_level(logging.WARNING, logger="cowork_llm")
    retry_policy, _ = policy(max_retry_after_seconds=60)
    with pytest.raises(ServerError):
        call(retry_policy, Script(ServerError("later", status_code=503, retry_after=100.0)))
    messages = [r.getMessage() for r in caplog.records if r.name == "cowork_llm.retry"]
    assert messages == ["ServerError 503 asked to wait 100.0s, more than "
                        "max_retry_after_seconds=60: not retrying"]


def _told(error, should_retry):
    error.should_retry = should_retry  # what the provider's x-should-retry header said
    return error


def test_the_providers_x_should_retry_overrides_the_status_both_ways():
    assert is_retryable(_told(BadRequestError("bad", status_code=400), True))
    assert not is_retryable(_told(ServerError("busy", status_code=503), False))
    assert is_retryable(ServerError("busy", status_code=503))  # nothing said: the status decides
    retry_policy, sleeps = policy()
    fn = Script(_told(ServerError("busy", status_code=503), False))
    with pytest.raises(ServerError):
        call(retry_policy, fn)
    assert fn.calls == 1 and sleeps == []
    assert call(retry_policy, Script(_told(BadRequestError("b", status_code=409), True))) == "ok"


def test_an_answer_that_is_not_the_asked_json_is_retried_only_when_configured():
    def not_json():
        return InvalidResponseError("the answer is not JSON", raw_text="Sure! Here it is")

    retry_policy, _ = policy()
    fn = Script(not_json())
    with pytest.raises(InvalidResponseError):
        call(retry_policy, fn)
    assert fn.calls == 1
    retry_policy, _ = policy(on_invalid_json=True)
    assert call(retry_policy, Script(not_json())) == "ok"
    assert call(retry_policy, Script(ServerError("x", status_code=500, retry_after=0.0))) == "ok"
    # A broken response that is not an answer (no raw_text) is never retried for it.
    fn = Script(InvalidResponseError("no choices in the body"))
    with pytest.raises(InvalidResponseError):
        call(retry_policy, fn)
    assert fn.calls == 1
