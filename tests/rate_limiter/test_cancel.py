"""cancel_on(): a thread's wait for a limiter slot called off by an event, before
admission only; the limiter stays clean and usable; RateLimitedLlm neither retries a
cancellation nor reports it as a failure. Threads are lined up with ``wait_for_queued``."""

import logging
import threading
import time
from typing import List, Optional

import pytest

from cowork_llm import AcquireCancelled, LimiterAcquireError
from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import RateLimitConfig, RetryConfig
from cowork_llm.errors import ServerError
from cowork_llm.rate_limiter import RateLimiter, cancel_on
from cowork_llm.rate_limiter._cancel import CANCEL_CHECK_SECONDS, active_cancel_events
from cowork_llm.retry import RetryPolicy, is_retryable
from cowork_llm.testing import MockLlm

WAIT = 5.0  # generous bound for "this should happen promptly"


@pytest.fixture
def make_limiter():
    made: List[RateLimiter] = []

    def make(**settings: object) -> RateLimiter:
        limiter = RateLimiter(RateLimitConfig(**settings))  # type: ignore[arg-type]
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


class CancellableAcquire:
    """acquire() in a thread of its own, inside ``cancel_on(event)``; records how it ended."""

    def __init__(self, limiter: RateLimiter, event: threading.Event) -> None:
        self.error: Optional[BaseException] = None
        self.ended_at: Optional[float] = None
        self.thread = threading.Thread(target=self._run, args=(limiter, event), daemon=True)
        self.thread.start()

    def _run(self, limiter: RateLimiter, event: threading.Event) -> None:
        try:
            with cancel_on(event):
                limiter.acquire().release()
        except BaseException as error:  # noqa: B036 - recorded for the test to assert on
            self.error = error
        self.ended_at = time.monotonic()

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the waiter was not cancelled"


def test_a_queued_waiter_is_cancelled_promptly_and_the_limiter_stays_usable(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=1)
    held = limiter.acquire()
    stop = threading.Event()
    waiter = CancellableAcquire(limiter, stop)
    assert limiter.wait_for_queued(1, WAIT)
    set_at = time.monotonic()
    stop.set()
    waiter.join()
    assert isinstance(waiter.error, AcquireCancelled) and isinstance(waiter.error, LimiterAcquireError)
    assert "no request was sent" in str(waiter.error) and "'default'" in str(waiter.error)
    assert waiter.ended_at is not None and waiter.ended_at - set_at < 1.0  # checked every 0.1 s
    assert limiter.queued == 0 and limiter.in_flight == 1 and limiter.admitted_count == 1
    held.release()
    with limiter.slot() as again:  # not in a scope: the set event means nothing here
        assert again.waited_seconds < 1.0
    assert limiter.in_flight == 0 and limiter.admitted_count == 2


@pytest.mark.parametrize("hold", ["interval", "pause"])
def test_a_head_waiting_for_the_interval_or_a_pause_is_cancelled(make_limiter, hold):
    limiter = make_limiter(min_interval_seconds=30 if hold == "interval" else 0)
    limiter.acquire().release()  # the next start may only come 30 s later
    if hold == "pause":
        limiter.pause(30)
    stop = threading.Event()
    waiter = CancellableAcquire(limiter, stop)
    assert limiter.wait_for_queued(1, WAIT)
    set_at = time.monotonic()
    stop.set()
    waiter.join()
    assert isinstance(waiter.error, AcquireCancelled)
    assert waiter.ended_at is not None and waiter.ended_at - set_at < 1.0
    assert limiter.queued == 0 and limiter.in_flight == 0 and limiter.admitted_count == 1


def test_an_event_set_before_asking_admits_nothing_even_with_a_free_slot(make_limiter):
    limiter = make_limiter(min_interval_seconds=0)
    stop = threading.Event()
    stop.set()
    with cancel_on(stop), pytest.raises(AcquireCancelled):
        limiter.acquire()
    assert limiter.admitted_count == 0 and limiter.queued == 0
    limiter.acquire().release()  # outside the scope
    assert limiter.admitted_count == 1


def test_an_admitted_slot_is_never_cancelled_and_scopes_nest_per_thread(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=2)
    outer, inner = threading.Event(), threading.Event()
    with cancel_on(outer):
        slot = limiter.acquire()
        outer.set()
        assert not slot.released and limiter.in_flight == 1  # admitted: it runs on
        with cancel_on(inner):
            assert active_cancel_events() == (outer, inner)
            with pytest.raises(AcquireCancelled):  # the outer event still counts inside
                limiter.acquire()
        assert active_cancel_events() == (outer,)
        other_thread_scopes: list = []
        t = threading.Thread(target=lambda: other_thread_scopes.append(active_cancel_events()))
        t.start()
        t.join()
        assert other_thread_scopes == [()]  # a scope belongs to its thread
    assert active_cancel_events() == ()
    slot.release()
    assert limiter.in_flight == 0 and limiter.queued == 0


def test_hammer_16_threads_half_of_them_cancelled(make_limiter):
    """8 threads acquire in a loop inside a scope until cancelled; 8 plain threads take 10
    slots each. After the event is set, a cancellable thread may have at most one
    admission (the one that asked just as it was set), plain threads are unaffected,
    nothing leaks and max_concurrent holds throughout."""
    limiter = make_limiter(min_interval_seconds=0.005, max_concurrent=2)
    stop = threading.Event()
    set_at: List[float] = []
    lock = threading.Lock()
    in_flight = [0]
    peak = [0]
    admissions = {"cancellable": [], "plain": []}  # type: dict
    cancelled: List[int] = []
    errors: List[BaseException] = []
    barrier = threading.Barrier(16)

    def take(kind: str) -> None:
        with limiter.slot() as slot:
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
                admissions[kind].append((threading.get_ident(), slot.admitted_at))
                if len(admissions["cancellable"]) + len(admissions["plain"]) == 40:
                    set_at.append(time.monotonic())
                    stop.set()
                in_flight[0] -= 1

    def cancellable() -> None:
        barrier.wait()
        try:
            with cancel_on(stop):
                for _ in range(10_000):
                    take("cancellable")
            errors.append(AssertionError("never cancelled"))
        except AcquireCancelled:
            with lock:
                cancelled.append(threading.get_ident())
        except BaseException as error:  # noqa: B036
            errors.append(error)

    def plain() -> None:
        barrier.wait()
        try:
            for _ in range(10):
                take("plain")
        except BaseException as error:  # noqa: B036
            errors.append(error)

    threads = [threading.Thread(target=cancellable if i % 2 else plain, daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 4)
        assert not t.is_alive(), "a thread is stuck in the limiter"
    assert errors == []
    assert len(cancelled) == 8 and len(admissions["plain"]) == 80
    late = [ident for ident, at in admissions["cancellable"] if at > set_at[0]]
    assert len(late) == len(set(late)) <= 8  # at most the one racing ask per thread
    assert peak[0] <= 2
    assert limiter.queued == 0 and limiter.in_flight == 0
    assert limiter.admitted_count == len(admissions["cancellable"]) + len(admissions["plain"])
    with limiter.slot():  # still usable
        pass


def test_the_check_interval_is_not_a_busy_poll():
    assert 0.05 <= CANCEL_CHECK_SECONDS <= 0.2


# --- through RateLimitedLlm and the retry policy ------------------------------------------


@pytest.mark.parametrize("method", ["chat", "stream"])
def test_a_cancelled_call_is_not_sent_retried_logged_as_an_error_or_counted_as_failed(
        make_limiter, caplog, method):
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    limiter = make_limiter(min_interval_seconds=0)
    inner = MockLlm()
    client = RateLimitedLlm(inner, limiter, RetryPolicy(RetryConfig(), sleep=lambda s: None))
    held = limiter.acquire()
    stop = threading.Event()
    outcome: list = []

    def call() -> None:
        with cancel_on(stop):
            try:
                outcome.append(getattr(client, method)([{"role": "user", "content": "hi"}]))
            except BaseException as error:  # noqa: B036
                outcome.append(error)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    assert limiter.wait_for_queued(1, WAIT)
    stop.set()
    t.join(WAIT)
    held.release()
    assert len(outcome) == 1 and isinstance(outcome[0], AcquireCancelled)
    assert not is_retryable(outcome[0])
    assert inner.prompts == [] and limiter.admitted_count == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("cancelled while waiting for a limiter slot" in r.getMessage()
               for r in caplog.records if r.levelno == logging.DEBUG)
    assert client.usage().total.failures == 0


def test_a_retry_waiting_for_its_slot_is_cancelled_not_sent(make_limiter):
    limiter = make_limiter(min_interval_seconds=0)
    stop = threading.Event()
    calls: List[str] = []

    def fail_once(messages):  # type: ignore[no-untyped-def]
        calls.append(messages[-1]["content"])
        raise ServerError("overloaded", status_code=529)

    # The backoff "sleep" is where the batch stops: the retry then asks for a slot.
    policy = RetryPolicy(RetryConfig(max_attempts=5), sleep=lambda seconds: stop.set())
    client = RateLimitedLlm(MockLlm(fail_once), limiter, policy)
    with cancel_on(stop), pytest.raises(AcquireCancelled):
        client.chat([{"role": "user", "content": "hi"}])
    assert calls == ["hi"] and limiter.admitted_count == 1 and limiter.queued == 0
