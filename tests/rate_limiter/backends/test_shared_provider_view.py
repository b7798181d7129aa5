"""What one process learns from the provider's headers, every process of the group
obeys: 3 processes (each its own client from COWORK_LLM_* variables) on the sqlite and
the redis backend, against one FakeLlmServer enforcing a quota. Measured at the server."""

import os
import subprocess
import sys
import time

import pytest
from _redis_server import redis_server

from cowork_llm import create_llm_client
from cowork_llm.errors import RateLimitError
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.testing import FakeLlmServer, Quota

PROCESSES = 3

WORKER = """
import sys, threading
from cowork_llm import create_llm_client

client = create_llm_client()
def work():
    for i in range(int(sys.argv[1])):
        client.chat([{"role": "user", "content": "process %s call %d" % (sys.argv[2], i)}], max_tokens=20)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
"""


@pytest.fixture(params=["sqlite", "redis"])
def backend_settings(request, tmp_path):
    if request.param == "sqlite":
        yield {"backend": "sqlite", "path": str(tmp_path / "limits.sqlite")}
    else:
        with redis_server() as url:
            yield {"backend": "redis", "redis_url": url}


def start_workers(server, settings, key, calls):
    env = {name: value for name, value in os.environ.items() if not name.startswith("COWORK_")}
    env.update(server.env(min_interval_seconds=0, max_concurrent=4, key=key, **settings))
    return [subprocess.Popen([sys.executable, "-c", WORKER, str(calls), str(n)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for n in range(PROCESSES)]


def finish(workers):
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr.decode(errors="replace")[-3000:]


def test_three_processes_run_at_the_shared_quota_without_a_429(backend_settings):
    # 3 processes x 4 threads x 12 calls = 144 requests against 120 a minute: 24 past the
    # bucket. Each process alone would think the whole bucket its own and overspend.
    with FakeLlmServer(quota=Quota(requests_per_minute=120)) as server:
        finish(start_workers(server, backend_settings, "shared-quota", calls=12))
        assert server.quota.admitted == 144
        assert server.quota.refused == 0


def test_what_one_process_learned_holds_the_others(backend_settings):
    _reset_global_rate_limiters()
    with FakeLlmServer() as server:
        llm = create_llm_client(server.config(min_interval_seconds=0, max_attempts=1,
                                              key="learned", **backend_settings))
        server.fail_next(status=429, headers={"x-ratelimit-limit-requests": "100",
                                              "x-ratelimit-remaining-requests": "0",
                                              "x-ratelimit-reset-requests": "4s"})
        with pytest.raises(RateLimitError):
            llm.chat([{"role": "user", "content": "hi"}])
        told = time.monotonic()
        finish(start_workers(server, backend_settings, "learned", calls=1))
        waits = sorted(r.arrival_monotonic - told for r in server.chat_requests[1:])
        llm.close()
    _reset_global_rate_limiters()
    assert len(waits) == PROCESSES * 4
    assert waits[0] >= 3.9, waits  # no process started before the reset another one learned


def test_the_redis_view_runs_on_redis_clock_not_the_hosts(monkeypatch):
    from cowork_llm.config import RateLimitConfig
    from cowork_llm.rate_limiter.backends.redis import RedisBackend

    with redis_server() as url:
        backend = RedisBackend(RateLimitConfig(backend="redis", redis_url=url, key="clock",
                                               min_interval_seconds=0))
        try:
            real = time.time()
            monkeypatch.setattr(time, "time", lambda: real + 300)  # this host runs 5 min ahead
            seen = backend.update_provider_view(lambda state, now: now)
            monkeypatch.undo()
        finally:
            backend.close()
    assert abs(seen - real) < 5, seen - real
