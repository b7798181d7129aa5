"""RateLimiter: the FIFO gate, max_concurrent, the interval, timeouts, pause, interrupts,
and the process-wide registry. Threads are lined up with ``wait_for_queued`` (a
condition), never with sleeps; timing assertions are one-sided."""

import ctypes
import logging
import signal
import threading
import time

import pytest
from pyrate_limiter import Rate

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import ConfigError, LimiterAcquireError
from cowork_llm.rate_limiter import (
    RateLimiter,
    get_global_rate_limiter,
    init_global_rate_limiter,
)
from cowork_llm.rate_limiter._ask_timing import AskTiming
from cowork_llm.rate_limiter._rates import request_rates
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.rate_limiter.backends import MemoryBackend, build_backend

WAIT = 5.0  # generous bound for "this should happen promptly"


@pytest.fixture(autouse=True)
def _fresh_registry():
    _reset_global_rate_limiters()
    yield
    _reset_global_rate_limiters()


@pytest.fixture
def make_limiter():
    made = []

    def make(**settings):
        limiter = RateLimiter(RateLimitConfig(**settings))
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


def start_thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def join_all(threads):
    for thread in threads:
        thread.join(WAIT * 4)
        assert not thread.is_alive(), "a thread is stuck in the limiter"


# --- rates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"min_interval_seconds": 2.0}, [Rate(1, 2000)]),
        ({"min_interval_seconds": 0.0501}, [Rate(1, 51)]),  # rounded up, never looser
        ({"min_interval_seconds": 0}, []),
        ({"min_interval_seconds": 2.0, "requests_per_minute": 20}, [Rate(1, 2000), Rate(20, 60000)]),
        ({"min_interval_seconds": 2.0, "requests_per_minute": 30}, [Rate(1, 2000), Rate(30, 60000)]),
        # 60/min is looser than one per 2 s: pyrate would reject the list, and it could never refuse
        ({"min_interval_seconds": 2.0, "requests_per_minute": 60}, [Rate(1, 2000)]),
        ({"min_interval_seconds": 2.0, "requests_per_minute": 1}, [Rate(1, 60000)]),
        ({"min_interval_seconds": 0, "requests_per_minute": 90}, [Rate(90, 60000)]),
        ({"min_interval_seconds": 90.0, "requests_per_minute": 5}, [Rate(1, 90000)]),
    ],
)
def test_request_rates(settings, expected):
    rates = request_rates(RateLimitConfig(**settings))
    assert [(r.limit, r.interval) for r in rates] == [(r.limit, r.interval) for r in expected]
    if rates:
        MemoryBackend(RateLimitConfig(**settings)).close()  # pyrate accepts the list


def test_every_configurable_backend_is_a_module_that_builds(tmp_path):
    # One registry: each name the config accepts has its backend module.
    import importlib

    from cowork_llm.config import LIMITER_BACKENDS
    from cowork_llm.rate_limiter.backends import LimiterBackend

    for name in LIMITER_BACKENDS:
        module = importlib.import_module(f"cowork_llm.rate_limiter.backends.{name}")
        assert issubclass(module.BACKEND, LimiterBackend)
    backend = build_backend(RateLimitConfig(backend="sqlite", path=str(tmp_path / "l.sqlite")))
    backend.close()
    with pytest.raises(ConfigError, match=r"llm\.rate_limit\.backend"):
        RateLimitConfig(backend="etcd")


# --- the interval -------------------------------------------------------------------------


def test_first_request_does_not_wait(make_limiter):
    limiter = make_limiter(min_interval_seconds=5.0)
    started = time.monotonic()
    with limiter.slot() as slot:
        assert slot.waited_seconds < 1.0
    assert time.monotonic() - started < 1.0


def test_starts_are_spaced_by_the_interval(make_limiter):
    limiter = make_limiter(min_interval_seconds=0.05)
    admitted = []
    for _ in range(6):
        with limiter.slot() as slot:
            admitted.append(slot.admitted_at)
    gaps = [b - a for a, b in zip(admitted, admitted[1:], strict=False)]
    assert min(gaps) >= 0.05 - 0.001, gaps  # admission is exact to pyrate's millisecond


def test_a_request_longer_than_the_interval_leaves_nothing_to_wait(make_limiter):
    limiter = make_limiter(min_interval_seconds=0.1)
    with limiter.slot():
        time.sleep(0.15)  # the request itself outlasts the interval
    with limiter.slot() as slot:
        assert slot.waited_seconds < 0.05


def test_weight_that_can_never_fit_fails_at_once_and_frees_the_queue(make_limiter):
    limiter = make_limiter(min_interval_seconds=1.0)
    with pytest.raises(LimiterAcquireError, match="can never fit"):
        limiter.acquire(weight=2)
    assert limiter.queued == 0
    with limiter.slot() as slot:
        assert slot.waited_seconds < 1.0


# --- the gate -----------------------------------------------------------------------------


def test_admission_is_first_come_first_served(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=1)
    order, lock = [], threading.Lock()

    def worker(name):
        with limiter.slot():
            with lock:
                order.append(name)

    held = limiter.acquire()
    threads = []
    for i in range(24):
        threads.append(start_thread(worker, i))
        assert limiter.wait_for_queued(i + 1, WAIT)  # thread i is in line before i+1 starts
    held.release()
    join_all(threads)
    assert order == list(range(24))


def test_fifo_holds_with_several_slots_and_an_interval(make_limiter):
    limiter = make_limiter(min_interval_seconds=0.01, max_concurrent=3)
    slots, lock = [], threading.Lock()

    def worker():
        with limiter.slot() as slot:
            with lock:
                slots.append(slot)

    held = [limiter.acquire() for _ in range(3)]
    threads = []
    for i in range(12):
        threads.append(start_thread(worker))
        assert limiter.wait_for_queued(i + 1, WAIT)
    for slot in held:
        slot.release()
    join_all(threads)
    by_ticket = sorted(slots, key=lambda s: s.ticket)
    times = [s.admitted_at for s in by_ticket]
    assert times == sorted(times), "a later ticket was admitted before an earlier one"


def test_at_most_max_concurrent_in_flight(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=3)
    go = threading.Event()
    inside, peak, lock = [0], [0], threading.Lock()

    def worker():
        with limiter.slot():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            go.wait(WAIT)
            with lock:
                inside[0] -= 1

    threads = [start_thread(worker) for _ in range(16)]
    assert limiter.wait_for_queued(13, WAIT)
    assert limiter.in_flight == 3
    assert limiter.queued == 13
    go.set()
    join_all(threads)
    assert peak[0] == 3
    assert limiter.in_flight == 0 and limiter.queued == 0
    assert limiter.admitted_count == 16


def test_slot_is_released_on_exception_and_release_is_idempotent(make_limiter):
    limiter = make_limiter(min_interval_seconds=0)
    with pytest.raises(RuntimeError):
        with limiter.slot():
            raise RuntimeError("request failed")
    assert limiter.in_flight == 0
    slot = limiter.acquire()
    slot.release()
    slot.release()
    assert limiter.in_flight == 0 and slot.released
    with limiter.slot():
        assert limiter.in_flight == 1


# --- timeouts -----------------------------------------------------------------------------


def test_timeout_in_the_queue_says_how_long_and_how_many(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, acquire_timeout_seconds=0.2)
    held = limiter.acquire()
    errors = []

    def worker():
        try:
            limiter.acquire()
        except LimiterAcquireError as error:
            errors.append((error, time.monotonic()))

    started = time.monotonic()
    threads = [start_thread(worker) for _ in range(3)]
    join_all(threads)
    held.release()
    assert len(errors) == 3
    message = str(errors[0][0])
    assert "after waiting 0.2" in message and "requests were queued" in message
    assert "acquire_timeout_seconds = 0.2" in message
    assert all(at - started >= 0.2 for _, at in errors)
    assert limiter.queued == 0 and limiter.in_flight == 0
    with limiter.slot() as slot:  # usable afterwards
        assert slot.waited_seconds < 0.2


def test_timeout_covers_the_interval_too(make_limiter):
    limiter = make_limiter(min_interval_seconds=30.0, acquire_timeout_seconds=0.1)
    with limiter.slot():
        pass
    started = time.monotonic()
    with pytest.raises(LimiterAcquireError, match="after waiting 0.1"):
        limiter.acquire()
    assert time.monotonic() - started < 5.0  # the 30 s interval was not waited out


def test_a_start_is_not_reserved_past_the_acquire_timeout(make_limiter):
    # The next slot lies 80 ms ahead, within the 100 ms a start may be reserved ahead,
    # but after the 40 ms the caller agreed to wait: it times out, nothing is reserved.
    limiter = make_limiter(min_interval_seconds=0.08, acquire_timeout_seconds=0.04)
    with limiter.slot():
        pass
    with pytest.raises(LimiterAcquireError, match="after waiting 0.0"):
        limiter.acquire()
    assert limiter.backend.try_acquire(1, 0, 0.0) > 0.0  # the slot 80 ms ahead is still free


def test_a_start_within_the_horizon_is_reserved_by_the_first_ask(make_limiter):
    # One process: the next head asks at the previous start and reserves the slot one
    # interval on (within 100 ms) at once, rather than asking just before it frees.
    limiter = make_limiter(min_interval_seconds=0.06)
    asks = []
    ask = limiter.backend.try_acquire

    def recorded(*args):
        asks.append((time.monotonic(), ask(*args)))
        return asks[-1][1]

    limiter.backend.try_acquire = recorded
    with limiter.slot() as first:
        pass
    with limiter.slot() as second:
        pass
    assert len(asks) == 2 and asks[1][1] < 0  # one ask each; the second a reservation
    assert asks[1][0] - first.admitted_at < 0.03  # asked at once, not 5 ms before the slot
    assert second.admitted_at - first.admitted_at >= 0.06 - 0.001


def test_the_starts_after_a_pause_are_not_held_back_by_it(make_limiter):
    # The first ask after the pause is told to wait 0.3 s; what the next head learns
    # from that answer (when to first ask) moves by at most the 100 ms horizon, and
    # back at once: the later starts keep the interval.
    limiter = make_limiter(min_interval_seconds=0.02)
    with limiter.slot():
        pass
    limiter.pause(0.3)
    starts = []
    for _ in range(7):
        with limiter.slot() as slot:
            starts.append(slot.admitted_at)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert max(gaps) < 0.02 + 0.1 + 0.05, gaps  # one ask late by the step at most
    assert sum(gaps[1:]) < 5 * 0.0202 + 0.15, gaps


# --- pause --------------------------------------------------------------------------------


def test_pause_holds_every_waiter_not_only_the_caller(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=1)
    held = limiter.acquire()
    slots = []

    def worker():
        with limiter.slot() as slot:
            slots.append(slot)

    threads = [start_thread(worker) for _ in range(3)]
    assert limiter.wait_for_queued(3, WAIT)
    paused_at = time.monotonic()
    limiter.pause(0.25)  # e.g. the holder got a 429 with Retry-After: 0.25
    held.release()
    join_all(threads)
    assert len(slots) == 3
    assert min(s.admitted_at for s in slots) >= paused_at + 0.25 - 0.001


def test_a_shorter_pause_does_not_cut_a_longer_one(make_limiter):
    limiter = make_limiter(min_interval_seconds=0)
    limiter.pause(0.3)
    limiter.pause(0.05)
    assert limiter.backend.try_acquire() > 0.2


def test_pause_wakes_a_head_already_waiting_for_the_interval(make_limiter):
    limiter = make_limiter(min_interval_seconds=0.3)
    with limiter.slot():
        pass
    paused_at = []

    def pause_soon():
        assert limiter.wait_for_queued(1, WAIT)
        paused_at.append(time.monotonic())
        limiter.pause(0.6)  # ends after the interval would have

    thread = start_thread(pause_soon)
    with limiter.slot() as slot:
        pass
    join_all([thread])
    assert slot.admitted_at >= paused_at[0] + 0.6 - 0.001


# --- interrupts and close -----------------------------------------------------------------


@pytest.fixture
def default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_main_when_queued(limiter, count):
    main = threading.main_thread().ident

    def fire():
        assert limiter.wait_for_queued(count, WAIT)
        signal.pthread_kill(main, signal.SIGINT)

    return start_thread(fire)


def test_ctrl_c_while_waiting_in_the_queue_leaves_the_limiter_usable(make_limiter, default_sigint):
    assert threading.current_thread() is threading.main_thread()
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=1)
    holder_has_slot, release_holder = threading.Event(), threading.Event()
    behind = []

    def holder():
        with limiter.slot():
            holder_has_slot.set()
            release_holder.wait(WAIT)

    holding = start_thread(holder)
    assert holder_has_slot.wait(WAIT)
    killer = interrupt_main_when_queued(limiter, 1)
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire()  # the real SIGINT arrives while this waits
    join_all([killer])
    assert holding.is_alive(), "the interrupt waited for the slot to free up"
    assert limiter.queued == 0
    # A later waiter is not stuck behind the interrupted ticket.
    waiter = start_thread(lambda: behind.append(limiter.acquire()))
    assert limiter.wait_for_queued(1, WAIT)
    release_holder.set()
    join_all([holding, waiter])
    assert len(behind) == 1
    behind[0].release()
    assert limiter.in_flight == 0


def test_ctrl_c_while_waiting_for_the_interval_leaves_the_limiter_usable(make_limiter, default_sigint):
    limiter = make_limiter(min_interval_seconds=0.3)
    with limiter.slot():
        pass
    killer = interrupt_main_when_queued(limiter, 1)
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire()  # the head, waiting for the bucket
    join_all([killer])
    assert limiter.queued == 0 and limiter.in_flight == 0
    with limiter.slot() as slot:  # the interval still holds, and nothing is stuck
        assert slot.waited_seconds < WAIT


def _raise_in_thread(thread, exc_type):
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    assert set_async_exc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)) == 1


def test_keyboard_interrupt_in_a_waiting_worker_thread(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=1)
    outcomes = {}

    def worker(name):
        try:
            slot = limiter.acquire()
        except KeyboardInterrupt:
            outcomes[name] = "interrupted"
            return
        outcomes[name] = "admitted"
        slot.release()

    held = limiter.acquire()
    first = start_thread(worker, "first")
    assert limiter.wait_for_queued(1, WAIT)
    second = start_thread(worker, "second")
    assert limiter.wait_for_queued(2, WAIT)
    _raise_in_thread(first, KeyboardInterrupt)
    # The async exception is delivered when the thread runs Python code again: wake
    # the waiters (a zero-length pause only notifies them).
    while first.is_alive():
        limiter.pause(0.0001)
        first.join(0.01)
    assert outcomes == {"first": "interrupted"}
    assert limiter.queued == 1
    held.release()
    join_all([second])
    assert outcomes["second"] == "admitted"
    assert limiter.queued == 0 and limiter.in_flight == 0


def test_close_wakes_waiters_with_a_clear_error(make_limiter):
    limiter = make_limiter(min_interval_seconds=0)
    held = limiter.acquire()
    errors = []

    def worker():
        try:
            limiter.acquire()
        except LimiterAcquireError as error:
            errors.append(error)

    threads = [start_thread(worker) for _ in range(4)]
    assert limiter.wait_for_queued(4, WAIT)
    limiter.close()
    join_all(threads)
    assert len(errors) == 4 and "is closed" in str(errors[0])
    held.release()
    with pytest.raises(LimiterAcquireError) as closed:
        limiter.acquire()
    # what happened, and what to do about it
    assert str(closed.value) == ("rate limiter 'default' is closed; create a new one "
                                 "(or a new client) to send more requests")
    limiter.close()  # twice is fine


def test_waiting_for_callers_who_never_come_ends_at_the_timeout(make_limiter):
    limiter = make_limiter(min_interval_seconds=0)
    started = time.monotonic()
    assert limiter.wait_for_queued(1, timeout=0.2) is False
    assert time.monotonic() - started < WAIT


# --- hammering ----------------------------------------------------------------------------


def test_hammer_40_threads(make_limiter):
    limiter = make_limiter(min_interval_seconds=0.002, max_concurrent=2)
    recorded = []  # the starts the backend recorded (monotonic microseconds), in order
    put = limiter.backend._put_request

    def recording_put(item):
        admitted = put(item)
        if admitted:
            recorded.append(item.timestamp / 1e6)
        return admitted
    limiter.backend._put_request = recording_put
    slots, lock = [], threading.Lock()
    inside, peak = [0], [0]

    def worker():
        for _ in range(5):
            with limiter.slot() as slot:
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                    slots.append(slot)
                with lock:
                    inside[0] -= 1

    threads = [start_thread(worker) for _ in range(40)]
    join_all(threads)
    assert len(slots) == 200 and limiter.admitted_count == 200
    assert peak[0] <= 2
    assert limiter.in_flight == 0 and limiter.queued == 0
    # Spacing: the recorded starts, exactly one padded interval apart or more.
    assert recorded == sorted(recorded) and len(recorded) == 200
    gaps = [b - a for a, b in zip(recorded, recorded[1:], strict=False)]
    assert min(gaps) >= 0.00202 - 1e-6
    # Order: by ticket, admission times only grow (each is read when the backend answered,
    # so a thread descheduled right then reads it up to a millisecond late).
    times = [s.admitted_at for s in sorted(slots, key=lambda s: s.ticket)]
    assert all(b >= a - 0.001 for a, b in zip(times, times[1:], strict=False))


def test_hammer_with_timeouts_leaks_nothing(make_limiter):
    limiter = make_limiter(min_interval_seconds=0, max_concurrent=2, acquire_timeout_seconds=0.02)
    results, lock = {"ok": 0, "timeout": 0}, threading.Lock()

    def worker():
        for _ in range(4):
            try:
                with limiter.slot():
                    time.sleep(0.005)  # a request in flight
                outcome = "ok"
            except LimiterAcquireError:
                outcome = "timeout"
            with lock:
                results[outcome] += 1

    threads = [start_thread(worker) for _ in range(32)]
    join_all(threads)
    assert results["ok"] + results["timeout"] == 128
    assert results["ok"] > 0 and results["timeout"] > 0
    assert limiter.in_flight == 0 and limiter.queued == 0
    assert limiter.admitted_count == results["ok"]


# --- when the head first asks (AskTiming) -------------------------------------------------


def test_without_an_interval_the_next_head_asks_at_once():
    # No interval: nothing to time, whatever the last wait was (a minute's rate).
    timing = AskTiming(RateLimitConfig(min_interval_seconds=0, requests_per_minute=60))
    timing.admitted(start=100.0, distance=5.0)
    assert timing.next_first_ask == 0.0


def test_a_slot_free_at_once_steps_the_first_ask_a_whole_horizon_earlier():
    timing = AskTiming(RateLimitConfig(min_interval_seconds=0.4))
    assert timing.horizon == 0.1
    timing._ask_after = 0.25  # learned: the next head first asks 0.25 s after a start
    timing.admitted(start=20.0, distance=0.0)  # free when asked: it may have asked too late
    assert timing.next_first_ask == pytest.approx(20.0 + 0.15)  # a whole step, not half
    # A slot 80 ms ahead of the first ask: 30 ms more than the aim (half the horizon).
    timing.admitted(start=30.0, distance=0.08)
    assert timing.next_first_ask == pytest.approx(30.0 + 0.18)


# --- the registry -------------------------------------------------------------------------


def test_registry_returns_one_limiter_per_key():
    a = init_global_rate_limiter(RateLimitConfig(min_interval_seconds=0.1, key="openai"))
    assert init_global_rate_limiter(RateLimitConfig(min_interval_seconds=0.1, key="openai")) is a
    assert get_global_rate_limiter("openai") is a
    b = init_global_rate_limiter(RateLimitConfig(key="anthropic"))
    assert b is not a


def test_registry_keeps_the_first_settings_and_warns(caplog):
    first = init_global_rate_limiter(RateLimitConfig(min_interval_seconds=0.5, key="k"))
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        again = init_global_rate_limiter(RateLimitConfig(min_interval_seconds=9.0, key="k"))
    assert again is first and again.config.min_interval_seconds == 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # It names the settings kept and the ones ignored, and what to do instead.
    assert len(warnings) == 1 and "'k' already exists" in warnings[0]
    assert "min_interval_seconds=0.5" in warnings[0] and "min_interval_seconds=9.0" in warnings[0]
    assert "(use another llm.rate_limit.key for a separate quota)" in warnings[0]


def test_a_limiter_made_from_a_backend_takes_the_backends_settings():
    backend = MemoryBackend(RateLimitConfig(min_interval_seconds=3.0, key="from-backend"))
    limiter = RateLimiter(backend=backend)
    try:
        assert limiter.config is backend.config
    finally:
        limiter.close()


def test_default_limiter_is_created_on_demand_other_keys_are_not():
    default = get_global_rate_limiter()
    assert default.config == RateLimitConfig()
    assert init_global_rate_limiter() is default
    init_global_rate_limiter(RateLimitConfig(key="known"))
    with pytest.raises(LookupError, match=r"'mistyped'.*registered: 'default', 'known'"):
        get_global_rate_limiter("mistyped")


def test_reset_closes_registered_limiters():
    limiter = init_global_rate_limiter(RateLimitConfig(key="x"))
    _reset_global_rate_limiters()
    assert limiter.closed
    assert init_global_rate_limiter(RateLimitConfig(key="x")) is not limiter


def test_registry_hammer_creates_one_limiter_per_key():
    barrier = threading.Barrier(32)
    seen, lock = [], threading.Lock()

    def worker(i):
        barrier.wait(WAIT)
        limiter = init_global_rate_limiter(RateLimitConfig(key=f"key{i % 4}"))
        with lock:
            seen.append((i % 4, limiter))

    join_all([start_thread(worker, i) for i in range(32)])
    for key in range(4):
        assert len({id(lim) for k, lim in seen if k == key}) == 1
    assert len({id(lim) for _, lim in seen}) == 4
