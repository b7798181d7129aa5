"""``max_concurrent_scope = "shared"``: at most max_concurrent requests in flight across
every member (sqlite and redis), measured at a FakeLlmServer whose responses take a
while; a SIGKILLed holder's slot comes back after its lease; a long holder renews it."""

import os
import signal
import subprocess
import sys
import time

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import ConfigError, LimiterAcquireError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter.backends import build_backend
from cowork_llm.testing import FakeLlmServer

LATENCY = 0.3
CAP = 2


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        yield {"backend": "sqlite", "path": str(tmp_path_factory.mktemp("cap") / "limits.sqlite")}
    else:
        with redis_server() as url:
            yield {"backend": "redis", "redis_url": url}


WORKER = """
import sys, threading
from cowork_llm import create_llm_client

client = create_llm_client()
def work(t):
    for i in range(3):
        client.chat([{"role": "user", "content": "p%s t%d c%d" % (sys.argv[1], t, i)}])
threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_never_more_than_the_cap_in_flight_at_the_server_across_4_processes(store, request):
    with FakeLlmServer(latency_seconds=LATENCY) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
        env.update(server.env(min_interval_seconds=0.01, max_concurrent=CAP, key=request.node.name,
                              max_concurrent_scope="shared", **store))
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env,
                                    stderr=subprocess.PIPE) for n in range(4)]
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr.decode(errors="replace")[-3000:]
        arrivals = sorted(r.arrival_monotonic for r in server.chat_requests)
    assert len(arrivals) == 36
    # A request holds its slot for at least LATENCY after it arrives, so with the cap
    # no LATENCY-long window (less arrival jitter) sees more than CAP arrivals.
    window = LATENCY - 0.05
    crowded = max(sum(1 for b in arrivals if a <= b < a + window) for a in arrivals)
    assert crowded <= CAP, crowded
    # And the cap is used: 36 requests, 2 at a time, about 0.3 s each.
    assert arrivals[-1] - arrivals[0] < 36 / CAP * LATENCY * 1.6


HOLDER = """
import json, sys, time
from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter import RateLimiter

limiter = RateLimiter(RateLimitConfig(**json.loads(sys.argv[1])))
limiter.backend.leases.lease_seconds = float(sys.argv[2])
limiter.acquire()
print("held", flush=True)
time.sleep(60)
"""


def _config(store, key, **more):
    settings = {"min_interval_seconds": 0, "max_concurrent": 1, "max_concurrent_scope": "shared",
                "key": key, **store, **more}
    return RateLimitConfig(**settings)


def test_a_sigkilled_holders_slot_returns_after_its_lease(store, request):
    import json

    lease = 1.0
    settings = dict(min_interval_seconds=0, max_concurrent=1, max_concurrent_scope="shared",
                    key=request.node.name, **store)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, json.dumps(settings), str(lease)],
                              stdout=subprocess.PIPE)
    limiter = RateLimiter(_config(store, request.node.name, acquire_timeout_seconds=10))
    limiter.backend.leases.lease_seconds = lease
    try:
        assert holder.stdout.readline() == b"held\n"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        slot = limiter.acquire()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        holder.stdout.close()
    waited = slot.admitted_at - killed
    slot.release()
    limiter.close()
    # Taken until the lease (renewed until the kill, every lease / 3) ran out; then free.
    assert 0.3 < waited < lease + 1.5, waited


def test_a_long_holder_renews_its_lease_and_its_release_frees_the_slot_at_once(store, request):
    first = RateLimiter(_config(store, request.node.name))
    second = RateLimiter(_config(store, request.node.name, acquire_timeout_seconds=1.5))
    for limiter in (first, second):
        limiter.backend.leases.lease_seconds = 0.5  # renewed every ~0.17 s
    try:
        slot = first.acquire()
        with pytest.raises(LimiterAcquireError):  # 1.5 s: three leases long, still held
            second.acquire()
        slot.release()
        started = time.monotonic()
        second.acquire().release()
        assert time.monotonic() - started < 0.3
    finally:
        first.close()
        second.close()


def test_the_process_scope_is_the_default_and_shared_needs_a_shared_backend(store):
    assert RateLimitConfig().max_concurrent_scope == "process"
    with pytest.raises(ConfigError, match="max_concurrent_scope"):
        RateLimitConfig(max_concurrent_scope="shared")
    with pytest.raises(ConfigError, match="max_concurrent_scope"):
        RateLimitConfig(max_concurrent_scope="global", **store)
    backend = build_backend(RateLimitConfig(**store, key="scope-default", min_interval_seconds=0))
    try:
        assert backend.try_acquire() == 0.0 and backend.take_lease() is None
    finally:
        backend.close()


def test_sixteen_threads_on_two_members_hammering_the_shared_cap(store, request):
    import threading

    limiters = [RateLimiter(_config(store, request.node.name, max_concurrent=3)) for _ in range(2)]
    inside, most, lock, errors = [0], [0], threading.Lock(), []

    def worker(limiter):
        try:
            for _ in range(8):
                with limiter.slot():
                    with lock:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    threading.Event().wait(0.002)
                    with lock:
                        inside[0] -= 1
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(limiters[n % 2],)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors and not any(t.is_alive() for t in threads)
        assert 1 < most[0] <= 3, most[0]  # the cap is shared by both members, and used
        backend = limiters[0].backend
        assert backend.leases.held() == [] and limiters[1].backend.leases.held() == []
        if hasattr(backend, "_keys"):  # every lease given back in the store too
            assert backend._client.zcard(backend._keys["leases"]) == 0
        else:
            assert backend._connection().execute("SELECT COUNT(*) FROM cowork_llm_leases").fetchone()[0] == 0
    finally:
        for limiter in limiters:
            limiter.close()


def test_a_redis_waiter_is_woken_by_the_release_not_by_its_fallback_poll(store, request):
    """On redis a member waiting for another's slot blocks until that member releases,
    and is let in at once, however long its fallback poll (no polling, no delay)."""
    import threading

    if store["backend"] != "redis":
        pytest.skip("sqlite has no wake-ups: its waiters look again after a bounded wait")
    first = RateLimiter(_config(store, request.node.name))
    second = RateLimiter(_config(store, request.node.name, acquire_timeout_seconds=30))
    second.backend.await_fallback_seconds = 20.0  # a poll would be far too late
    refused = threading.Event()
    ask = second.backend.try_acquire

    def asking(*args):
        wait = ask(*args)
        if wait > 0:
            refused.set()
        return wait

    second.backend.try_acquire = asking
    admitted = []
    try:
        slot = first.acquire()
        thread = threading.Thread(target=lambda: admitted.append((second.acquire(), time.monotonic())))
        thread.start()
        assert refused.wait(10)  # the waiter asked and was told the slot is out
        released = time.monotonic()
        slot.release()
        thread.join(25)
        assert admitted, "the waiter was never let in"
        assert admitted[0][1] - released < 5.0  # woken, not polled after 20 s
        admitted[0][0].release()
    finally:
        first.close()
        second.close()
