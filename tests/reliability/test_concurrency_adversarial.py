"""Adversarial concurrency: trying to break the promises of the limiter, the client,
streams and the shared helpers with many threads, interrupts, the garbage collector and
close() at awkward moments. Every test is bounded in time and waits on events, not sleeps.
"""

import gc
import os
import threading
from contextlib import contextmanager
from typing import Iterator, List

import pytest

from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.streaming import wait_for_collected_streams
from cowork_llm.testing import MockLlm

HELLO = [{"role": "user", "content": "one two three four"}]


def run_threads(targets: List, timeout: float = 10.0) -> List[threading.Thread]:
    """Start one daemon thread per target; return those still running after ``timeout``."""
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return [t for t in threads if t.is_alive()]


@contextmanager
def collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def abandon_stream_in_a_cycle(llm: RateLimitedLlm) -> None:
    """Read one piece, then drop the stream while a stored exception's traceback keeps
    this frame (and the stream) alive in a cycle: only the cycle collector frees it."""
    stream = llm.stream(HELLO)
    next(stream)
    try:
        raise ValueError("the consumer failed")
    except ValueError as error:
        kept = error  # noqa: F841 - kept -> traceback -> this frame -> kept: a cycle


# --- the garbage collector ending an abandoned stream ------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("lock_of", ["limiter", "usage"])
def test_a_collection_inside_a_locked_section_does_not_deadlock(lock_of):
    """A collection starts at any allocation, e.g. inside RateLimiter.acquire with the
    limiter's lock held. Ending the collected stream there took that same lock (a plain
    Lock): the thread, and every thread waiting for a slot, hung for ever."""
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=2))
    llm = RateLimitedLlm(MockLlm(), limiter)
    with collector_paused():
        abandon_stream_in_a_cycle(llm)
        assert limiter.in_flight == 1  # only a collection can give it back
        lock = limiter._lock if lock_of == "limiter" else llm.usage_tracker._lock
        collected = threading.Event()

        def collect_holding_the_lock():
            with lock:
                gc.collect()
            collected.set()

        assert not run_threads([collect_holding_the_lock], timeout=5)
    assert collected.is_set()
    assert wait_for_collected_streams()
    assert limiter.in_flight == 0
    assert llm.usage().total.requests == 1  # the abandoned call was still counted


@pytest.mark.timeout(30)
def test_threads_abandoning_streams_in_cycles_never_freeze_the_limiter():
    """The natural form of the bug: automatic collections under load. Before the fix
    four threads froze within ~150 calls."""
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=4))
    llm = RateLimitedLlm(MockLlm(), limiter)
    calls = 150
    errors: List[BaseException] = []

    def worker():
        try:
            for i in range(calls):
                if i % 3 == 0:
                    abandon_stream_in_a_cycle(llm)
                else:
                    llm.chat(HELLO)
        except BaseException as error:  # an assert in a thread would be lost
            errors.append(error)

    threshold = gc.get_threshold()
    gc.set_threshold(50)  # collections often, at allocations anywhere
    try:
        stuck = run_threads([worker] * 4, timeout=20)
    finally:
        gc.set_threshold(*threshold)
    assert not stuck, "threads deadlocked"
    assert not errors
    gc.collect()
    assert wait_for_collected_streams()
    assert limiter.in_flight == 0 and limiter.queued == 0
    assert llm.usage().total.requests == 4 * calls


# --- fork() after a limiter exists --------------------------------------------------------------


def _in_child(work) -> int:
    """Fork; the child runs ``work()`` and exits 0 if it returned, 1 if it raised (never
    running pytest's code). Returns the child's exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads running
@pytest.mark.timeout(20)
def test_a_forked_child_is_not_stuck_behind_the_parents_slots():
    """A slot held by another parent thread at fork() time was never given back in the
    child: it waited until acquire_timeout_seconds (for ever by default)."""
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=1,
                                          acquire_timeout_seconds=3))
    holding, let_go = threading.Event(), threading.Event()

    def hold_a_slot():
        with limiter.slot():
            holding.set()
            let_go.wait(10)

    holder = threading.Thread(target=hold_a_slot, daemon=True)
    holder.start()
    assert holding.wait(5)
    mine = limiter.acquire  # the forking thread takes nothing: max_concurrent is 1

    def child():
        slot = mine()
        slot.release()
        assert limiter.in_flight == 0

    try:
        assert _in_child(child) == 0
    finally:
        let_go.set()
        holder.join(5)
    assert limiter.in_flight == 0  # the parent's own count is untouched


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
@pytest.mark.timeout(20)
def test_a_slot_taken_before_fork_and_released_in_the_child_does_not_count_twice():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=1,
                                          acquire_timeout_seconds=3))
    before_fork = limiter.acquire()

    def child():
        before_fork.release()  # the forking thread leaves its `with` block in the child
        assert limiter.in_flight == 0
        assert limiter.acquire().released is False
        assert limiter.in_flight == 1  # not 0: the old slot did not make room for two

    assert _in_child(child) == 0
    assert limiter.in_flight == 1
    before_fork.release()
    assert limiter.in_flight == 0


# --- waiters leaving in numbers (these held; kept as regression tests) --------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("how", ["close", "timeout"])
def test_many_waiters_leaving_at_once_leave_a_clean_usable_queue(how):
    from cowork_llm.errors import LimiterAcquireError

    timeout = 0.3 if how == "timeout" else None
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=1,
                                          acquire_timeout_seconds=timeout))
    held = limiter.acquire()
    outcomes: List[str] = []
    lock = threading.Lock()

    def waiter():
        try:
            limiter.acquire()
            result = "admitted"
        except LimiterAcquireError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(24)]
    for thread in threads:
        thread.start()
    if how == "close":
        assert limiter.wait_for_queued(24)
        limiter.close()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert outcomes == ["refused"] * 24
    assert limiter.queued == 0 and limiter.in_flight == 1
    held.release()
    assert limiter.in_flight == 0
    if how == "timeout":  # still usable, straight away
        limiter.acquire().release()
