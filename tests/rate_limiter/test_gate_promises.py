"""Promises of the gate that a user relies on and that no other test measured (found by
mutation testing, see TESTING.md): how fast Ctrl-C takes effect while the main thread
waits, that a slot spends no tokens unless asked to, that a forked child is not stuck
on a lock held by a parent thread, and that closing twice closes the backend once."""

import _thread
import logging
import os
import signal
import threading
import time

import pytest

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterAcquireError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter._rates import reservation_lead_seconds
from cowork_llm.rate_limiter.backends import MemoryBackend

WAIT = 5.0
# Ctrl-C must take effect within about half a second. The gate wakes the main thread
# every 0.2 s to let Python run its signal handler; the rest is slack for a busy machine.
PROMPT_CTRL_C = 0.75


@pytest.fixture
def default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def start_thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# --- Ctrl-C in the main thread ------------------------------------------------------------


def _interrupt_main_when_queued(limiter, fired_at):
    def fire():
        assert limiter.wait_for_queued(1, WAIT)
        fired_at.append(time.monotonic())
        # Like a Ctrl-C that lands just before the main thread blocks: Python only
        # records it, and a thread blocked on a lock does not notice until it wakes up.
        _thread.interrupt_main()

    return start_thread(fire)


@pytest.mark.parametrize("waiting_for", ["a free slot", "the interval"])
def test_ctrl_c_in_the_main_thread_takes_effect_within_half_a_second(waiting_for, default_sigint):
    assert threading.current_thread() is threading.main_thread()
    if waiting_for == "a free slot":  # another thread holds the only slot for 5 s
        limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=1))
    else:  # the next start is 60 s away
        limiter = RateLimiter(RateLimitConfig(min_interval_seconds=60))
    holder_ready, let_go = threading.Event(), threading.Event()

    def holder():
        with limiter.slot():
            holder_ready.set()
            let_go.wait(WAIT)

    holding = start_thread(holder)
    try:
        assert holder_ready.wait(WAIT)
        fired_at = []
        killer = _interrupt_main_when_queued(limiter, fired_at)
        with pytest.raises(KeyboardInterrupt):
            limiter.acquire()
        raised_at = time.monotonic()
        killer.join(WAIT)
        assert raised_at - fired_at[0] < PROMPT_CTRL_C, (
            f"Ctrl-C took {raised_at - fired_at[0]:.2f} s to interrupt the wait")
        assert limiter.queued == 0
    finally:
        let_go.set()
        holding.join(WAIT)
        limiter.close()


# --- tokens ----------------------------------------------------------------------------------


def test_slots_taken_without_tokens_leave_the_token_budget_whole():
    """Only a caller that says how many tokens it uses spends the tokens_per_minute
    budget; a plain slot() or acquire() (e.g. a health check) spends none."""
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, tokens_per_minute=60,
                                          acquire_timeout_seconds=1.0))
    try:
        for _ in range(5):
            with limiter.slot():
                pass
            limiter.acquire().release()
        # The whole budget is still there: refilling 10 spent tokens would take 10 s.
        with limiter.slot(tokens=60) as slot:
            assert slot.waited_seconds < 0.5
        with pytest.raises(LimiterAcquireError):  # and now it is spent
            limiter.acquire(tokens=60)
    finally:
        limiter.close()


# --- fork ------------------------------------------------------------------------------------


class _WithdrawBlocks(MemoryBackend):
    """A backend whose withdraw() (called by the gate with its lock held, when the head
    of the queue gives up) waits until told: a parent thread busy inside the limiter."""

    def __init__(self, config):
        super().__init__(config)
        self.inside, self.let_go = threading.Event(), threading.Event()

    def withdraw(self):
        self.inside.set()
        self.let_go.wait(WAIT)


def _exit_code_of_child(work, timeout):
    """Fork; the child runs ``work()`` and exits 0 if it returned, 1 if it raised. A child
    still running after ``timeout`` s is killed: returns None."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads running
def test_a_child_forked_while_a_parent_thread_is_inside_the_limiter_can_use_it():
    """The forking thread is not the only one using the limiter: another may hold its
    internal lock at that instant and never give it back in the child, where it does
    not exist. The child must still get a slot."""
    config = RateLimitConfig(min_interval_seconds=30, acquire_timeout_seconds=0.1)
    backend = _WithdrawBlocks(config)
    limiter = RateLimiter(config, backend=backend)
    limiter.acquire().release()  # the next start is 30 s away: the next head times out
    gave_up = []

    def times_out():
        try:
            limiter.acquire()
        except LimiterAcquireError as error:
            gave_up.append(error)

    parent_thread = start_thread(times_out)
    try:
        assert backend.inside.wait(WAIT)  # it holds the limiter's lock now

        def child():
            limiter.acquire().release()  # a fresh gate and a fresh memory backend

        assert _exit_code_of_child(child, timeout=10) == 0, "the child was stuck or failed"
    finally:
        backend.let_go.set()
        parent_thread.join(WAIT)
        limiter.close()
    assert len(gave_up) == 1


# --- close -----------------------------------------------------------------------------------


class _CountsCloses(MemoryBackend):
    def __init__(self, config):
        super().__init__(config)
        self.closes = 0

    def close(self):
        self.closes += 1
        super().close()


def test_closing_twice_closes_the_backend_once():
    """close() may be called by several owners (a client and the registry at exit); a
    shared backend (a redis connection pool, a sqlite file) is released only once."""
    config = RateLimitConfig(min_interval_seconds=0)
    backend = _CountsCloses(config)
    limiter = RateLimiter(config, backend=backend)
    limiter.close()
    limiter.close()
    assert backend.closes == 1 and limiter.closed


def test_closing_from_many_threads_at_once_closes_the_backend_once():
    config = RateLimitConfig(min_interval_seconds=0)
    backend = _CountsCloses(config)
    limiter = RateLimiter(config, backend=backend)
    start = threading.Barrier(16)

    def close():
        start.wait(WAIT)
        limiter.close()

    threads = [start_thread(close) for _ in range(16)]
    for thread in threads:
        thread.join(WAIT)
    assert backend.closes == 1


# --- waits with a timeout, and what the gate says ---------------------------------------------


def test_with_an_acquire_timeout_a_worker_still_starts_when_the_interval_is_up():
    """The timeout bounds the wait; it does not replace it: a worker thread (no Ctrl-C
    slicing) waiting for a 0.3 s interval starts after about 0.3 s, not at the timeout."""
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0.3, acquire_timeout_seconds=20))
    try:
        limiter.acquire().release()
        waited = []
        worker = start_thread(lambda: waited.append(limiter.acquire().waited_seconds))
        worker.join(WAIT * 2)
        assert waited and 0.25 <= waited[0] < 3.0, waited
    finally:
        limiter.close()


def test_a_timeout_error_says_where_the_caller_was_in_the_queue():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=1,
                                          acquire_timeout_seconds=0.1))
    held = limiter.acquire()
    try:
        with pytest.raises(LimiterAcquireError) as raised:
            limiter.acquire()
        assert "1 requests were queued (0 ahead of this one), 1 in flight" in str(raised.value)
    finally:
        held.release()
        limiter.close()


def test_a_pause_is_logged_with_the_key_and_its_length(caplog):
    caplog.set_level(logging.INFO, logger="cowork_llm")
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, key="paused-key"))
    try:
        limiter.pause(0.01)
    finally:
        limiter.close()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("cowork_llm.rate_limiter")] \
        == ["rate limiter 'paused-key' paused for 0.01 s"]


class _GridRecorded(MemoryBackend):
    """A backend that admits every ask at once: as if each start had been recorded on
    the grid long ago and its thread only now woke up (a busy machine)."""

    def try_acquire(self, weight=1, tokens=0, lead=0.0):
        return 0.0


def test_threads_that_wake_late_still_start_an_interval_apart_in_their_process():
    config = RateLimitConfig(min_interval_seconds=0.05, max_concurrent=8)
    limiter = RateLimiter(config, backend=_GridRecorded(config))
    starts, lock = [], threading.Lock()

    def start():
        with limiter.slot():
            with lock:
                starts.append(time.monotonic())
    threads = [start_thread(start) for _ in range(6)]
    for thread in threads:
        thread.join(WAIT)
    starts.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 6 and min(gaps) >= 0.05 - 0.002, gaps  # measured after the gate
    limiter.close()


def test_ctrl_c_while_waiting_to_start_gives_the_slot_back(default_sigint):
    config = RateLimitConfig(min_interval_seconds=30, max_concurrent=2)
    limiter = RateLimiter(config, backend=_GridRecorded(config))
    limiter.acquire().release()  # the process's last start: the next may start 30 s later
    # A real SIGINT (it ends the main thread's sleep at once), a little after the wait began.
    timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            limiter.acquire()  # admitted at once, then waits for the spacing in the main thread
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert limiter.in_flight == 0
    limiter.close()


class _ToldToWait(MemoryBackend):
    """A shared store's answers, scripted: wait ``wait`` seconds, then admit; it records
    how long the gate then asks it to block for a wake-up (and offers none)."""

    def __init__(self, config, wait):
        super().__init__(config)
        self.answers = [wait, 0.0]
        self.blocked_for = []

    def try_acquire(self, weight=1, tokens=0, lead=0.0):
        return self.answers.pop(0)

    def await_turn(self, seconds):
        self.blocked_for.append(seconds)
        return False  # nothing to wait on: the gate sleeps for the wait itself


def test_after_a_wait_answer_the_head_asks_again_the_lead_before_the_slot():
    # Asking the lead (5 ms) before the slot frees lets the store reserve it for that
    # instant; asking after it would add the lateness to the interval.
    config = RateLimitConfig(min_interval_seconds=0.2)
    backend = _ToldToWait(config, wait=0.15)  # under the main thread's wait slice (0.2 s)
    limiter = RateLimiter(config, backend=backend)
    try:
        limiter.acquire().release()
    finally:
        limiter.close()
    lead = reservation_lead_seconds(config)
    # The gate's own wait, handed to the backend's wake-up (bounded, never unbounded).
    assert backend.blocked_for == [pytest.approx(0.15 - lead, abs=1e-3)]
