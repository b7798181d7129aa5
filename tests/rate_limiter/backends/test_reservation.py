"""Reservations: when only the request rates stand in the way and they free a slot
within the asker's lead, every backend records the start at that instant and says so
(a negative answer); the head of the gate then starts no earlier. Without this the
sleep's overshoot and the store's round trip were added to every interval (82-89 % of
100 requests/s; BENCHMARKS.md, "Limiter at scale")."""


import threading

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter.backends import build_backend


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_backend(request, tmp_path):
    """Members of one limit (memory: one member only), closed afterwards."""
    where = {"memory": {}, "sqlite": {"backend": "sqlite", "path": str(tmp_path / "l.sqlite")}}
    if request.param == "redis":
        where["redis"] = {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    made = []
    shared = []

    def make(**settings):
        settings.setdefault("min_interval_seconds", 1.0)
        settings.setdefault("key", f"reserve-{request.node.name}")
        if request.param == "memory" and shared:
            return shared[0]  # one process: its threads share one backend
        backend = build_backend(RateLimitConfig(**where[request.param], **settings))
        made.append(backend)
        shared.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_a_slot_freeing_within_the_lead_is_reserved_for_that_instant(make_backend):
    first, second, third = (make_backend() for _ in range(3))
    assert first.try_acquire() == 0.0
    start_in = -second.try_acquire(lead=2.0)
    assert 0.9 < start_in <= 1.011  # admitted, for the end of the 1.01 s padded interval
    # The next start counts from the reservation, not from now.
    assert 1.9 < third.try_acquire() <= 2.021


def test_a_slot_freeing_after_the_lead_is_only_waited_for(make_backend):
    first, second = make_backend(), make_backend()
    assert first.try_acquire() == 0.0
    assert 0.9 < second.try_acquire(lead=0.5) <= 1.011
    assert 0.9 < second.try_acquire(lead=0.5) <= 1.011  # nothing was recorded


def test_no_reservation_while_the_token_budget_is_short(make_backend):
    first, second = (make_backend(tokens_per_minute=100) for _ in range(2))
    assert first.try_acquire(tokens=100) == 0.0
    # The interval frees within the lead, the tokens only in ~30 s: wait, reserve nothing.
    assert 25 < second.try_acquire(tokens=50, lead=2.0) <= 31


def test_no_reservation_through_a_pause(make_backend):
    first, second = make_backend(), make_backend()
    assert first.try_acquire() == 0.0
    first.pause(1.5)
    assert 1.4 < second.try_acquire(lead=2.0) <= 1.51


@pytest.mark.parametrize("adaptive", [False, True], ids=["configured", "adaptive"])
def test_the_gate_starts_no_earlier_than_the_reserved_instant(make_backend, adaptive):
    backend = make_backend(min_interval_seconds=0.05)
    recorded = []  # the starts the store recorded, in seconds on its clock
    if hasattr(backend, "_acquire"):  # redis: now and the reservation, from the script
        ask = backend._acquire

        def recording(**kwargs):
            answer = ask(**kwargs)
            if int(answer[0]) == 0:
                recorded.append((float(answer[2]) + float(answer[1])) / 1000)
            return answer
        backend._acquire = recording
        clock = backend.clock
    else:
        put = backend._put_request

        def recording_put(item):
            admitted = put(item)
            if admitted:
                recorded.append(item.timestamp / 1e6)
            return admitted
        backend._put_request = recording_put

        def clock():
            return backend._request_clock() / 1e6
    limiter = RateLimiter(backend.config, backend=backend)
    started = []
    demand = {"requests": 1.0, "tokens": 100.0} if adaptive else None  # what the client passes
    for _ in range(12):
        with limiter.slot(demand=demand):
            started.append(clock())
    gaps = [b - a for a, b in zip(recorded, recorded[1:], strict=False)]
    # The padded interval on the store's clock (less a microsecond of float rounding in
    # the conversion to seconds).
    assert len(recorded) == 12 and min(gaps) >= 0.0505 - 1e-6
    # Each caller went on only once its recorded start had come (redis: the clock is
    # estimated from the last answer, good to half a round trip).
    slack = 0.002 if hasattr(backend, "_acquire") else 0.0
    assert all(s >= r - slack for s, r in zip(started, recorded, strict=True))
    # And the head asked ahead, so (nearly always) its slot was reserved, exactly one
    # padded interval after the previous start.
    assert sum(1 for g in gaps if g < 0.0506) >= 6, gaps


def test_the_head_asks_once_per_admission_when_the_interval_binds(make_backend):
    # Each ask is a round trip to a shared store: the next head waits until its slot can
    # be free (the lead before it) instead of asking at once and being told to wait.
    backend = make_backend(min_interval_seconds=0.02)
    asks = []
    ask = backend.try_acquire

    def counting(*args, **kwargs):
        asks.append(1)
        return ask(*args, **kwargs)
    backend.try_acquire = counting
    limiter = RateLimiter(backend.config, backend=backend)

    def worker():
        for _ in range(5):
            with limiter.slot():
                pass
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert limiter.admitted_count == 20
    assert len(asks) <= 20 + 8, len(asks)  # a late wake-up may cost an ask; not one per turn
