"""What every shared limiter backend promises, checked once for each: members (each
standing for a process or host) share the per-minute rate and a 429's pause, and the
pause ends. Backend-specific behaviour is in test_limiter_sqlite.py and
test_limiter_redis.py."""

import time

import pytest
from _redis_server import redis_cluster, redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter.backends import build_backend


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def cluster_url():
    with redis_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis-cluster", marks=pytest.mark.redis)])
def make_backend(request, tmp_path):
    """Backends of one shared limit (a fresh key per test), closed afterwards."""
    if request.param == "sqlite":
        where = {"backend": "sqlite", "path": str(tmp_path / "limits.sqlite")}
    elif request.param == "redis":
        where = {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    else:
        where = {"backend": "redis", "redis_url": request.getfixturevalue("cluster_url")}
    key = f"test-{request.node.name}"
    made = []

    def make(**settings):
        settings.setdefault("min_interval_seconds", 1.0)
        settings.setdefault("key", key)
        backend = build_backend(RateLimitConfig(**where, **settings))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_requests_per_minute_is_shared(make_backend):
    members = [make_backend(min_interval_seconds=0, requests_per_minute=3) for _ in range(3)]
    assert [m.try_acquire() for m in members] == [0.0, 0.0, 0.0]
    assert make_backend(min_interval_seconds=0, requests_per_minute=3).try_acquire() > 55


def test_a_pause_by_one_member_holds_every_member(make_backend):
    first, second = make_backend(min_interval_seconds=0), make_backend(min_interval_seconds=0)
    first.pause(30)
    assert 29 < second.pause_remaining() <= 30.01
    assert 29 < second.try_acquire() <= 30.01
    second.pause(5)  # a shorter pause does not cut the longer one short
    assert first.pause_remaining() > 29


def test_the_interval_is_shared_and_the_queue_keeps_arrival_order(make_backend):
    first, second, third = (make_backend(min_interval_seconds=0.3) for _ in range(3))
    assert first.try_acquire() == 0.0
    assert 0.2 < second.try_acquire() <= 0.31  # front of the queue, waits for the bucket
    assert third.try_acquire() > 0  # behind second
    limiters = [RateLimiter(b.config, backend=b) for b in (second, third)]
    order = []
    for limiter in limiters:
        slot = limiter.acquire()
        order.append(slot.admitted_at)
        slot.release()
    assert order[1] - order[0] >= 0.25


def test_the_pause_ends(make_backend):
    first, second = make_backend(min_interval_seconds=0), make_backend(min_interval_seconds=0)
    first.pause(0.2)
    limiter = RateLimiter(second.config, backend=second)
    started = time.monotonic()
    with limiter.slot():
        pass
    assert 0.19 <= time.monotonic() - started < 2.0
