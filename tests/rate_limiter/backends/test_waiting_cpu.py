"""Waiting without polling: processes waiting ~10 s for a shared slot (one at the front
of the shared queue waiting for the interval, one behind it) use little CPU, measured
with resource.getrusage in each waiting process. Before, a member behind the front
asked again every 20 ms: 2-3 % of a core per waiting process."""

import json
import subprocess
import sys

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter.backends import build_backend

INTERVAL = 5.0  # the second waiter waits two intervals: ~10 s, behind the first
CPU_BOUND = 0.1  # seconds of CPU over ~10 s of waiting: 1 % of a core, generous here

WAITER = """
import json, resource, sys, threading, time
from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter import RateLimiter

limiter = RateLimiter(RateLimitConfig(**json.loads(sys.argv[1])))
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.monotonic()
slots = []
worker = threading.Thread(target=lambda: slots.append(limiter.acquire()))  # not the main thread,
worker.start()                                                          # which wakes every 0.2 s
limiter.wait_for_queued(1)
time.sleep(0.3)  # let it take its ticket in the shared queue before the next process starts
print("queued", flush=True)
worker.join()
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({"cpu": cpu, "waited": time.monotonic() - started, "at": slots[0].admitted_at}), flush=True)
"""


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield {"backend": "sqlite", "path": str(tmp_path / "limits.sqlite")}
    else:
        with redis_server() as url:
            yield {"backend": "redis", "redis_url": url}


def test_waiting_members_use_little_cpu(store):
    settings = dict(min_interval_seconds=INTERVAL, key="cpu", **store)
    opener = build_backend(RateLimitConfig(**settings))
    try:
        assert opener.try_acquire() == 0.0  # the interval starts now
        waiters = []
        for _ in range(2):  # the first takes the front ticket, the second queues behind it
            waiter = subprocess.Popen([sys.executable, "-c", WAITER, json.dumps(settings)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert waiter.stdout.readline() == b"queued\n", waiter.stderr.read()[-2000:]
            waiters.append(waiter)
        results = []
        for waiter in waiters:
            out, err = waiter.communicate(timeout=120)
            report = out.decode().strip().splitlines()
            assert waiter.returncode == 0 and report, (out, err.decode(errors="replace")[-2000:])
            results.append(json.loads(report[-1]))
    finally:
        opener.close()
    # How long each waited depends on when its process got going on a busy machine; the
    # second was admitted an interval after the first, and some waiting was measured.
    assert results[1]["at"] - results[0]["at"] >= INTERVAL, results
    assert max(result["waited"] for result in results) > 2.0, results
    for result in results:
        assert result["cpu"] < CPU_BOUND * max(result["waited"], 1.0) / 10, results
