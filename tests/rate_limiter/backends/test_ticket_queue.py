"""The shared ticket queue of the sqlite and redis backends: members (each backend here
stands for a process; one test kills a real one) are admitted in the order their heads
first asked, a head that gives up or closes leaves the queue at once, and a ticket whose
process died is skipped after the stale timeout."""

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterAcquireError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter._rates import reservation_horizon_seconds
from cowork_llm.rate_limiter.backends import build_backend
from cowork_llm.rate_limiter.backends._ticket_queue import QueuedBackend

STALE = 1.0  # seconds; the library's default is 5 s


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store(request, tmp_path_factory):
    """The settings naming one shared store, sqlite file or redis server."""
    if request.param == "sqlite":
        yield {"backend": "sqlite", "path": str(tmp_path_factory.mktemp("queue") / "limits.sqlite")}
    else:
        with redis_server() as url:
            yield {"backend": "redis", "redis_url": url}


@pytest.fixture
def make_backend(store, request):
    made = []
    key = f"queue-{request.node.name}"  # a fresh limit per test in the shared store

    def make(**settings):
        settings.setdefault("min_interval_seconds", 0.5)
        backend = build_backend(RateLimitConfig(key=key, **store, **settings))
        assert isinstance(backend, QueuedBackend)
        backend.stale_ticket_seconds = STALE
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def member_of(backend):
    """This thread's ticket in ``backend`` (None when it holds none)."""
    return backend._members.get(threading.get_ident())


def queue_of(backend):
    """The tickets of the shared queue, front first, as the store holds them."""
    if hasattr(backend, "_keys"):  # redis
        return [m.decode() for m in backend._client.zrange(backend._keys["queue"], 0, -1)]
    rows = backend._connection().execute(
        "SELECT member FROM cowork_llm_queue WHERE key = ? ORDER BY ticket", (backend.config.key,))
    return [row[0] for row in rows]


def test_the_first_to_ask_is_admitted_first_even_if_it_asks_again_last(make_backend):
    first, third = make_backend(), make_backend()
    second = make_backend(acquire_timeout_seconds=0.7)
    assert third.try_acquire() == 0.0  # the interval starts now
    assert first.try_acquire() > 0.4  # takes the front ticket, waits for the bucket
    assert second.try_acquire() > 0  # behind first
    assert queue_of(first) == [member_of(first), member_of(second)]
    # The interval ends while first is not asking: second still may not jump the queue.
    with pytest.raises(LimiterAcquireError, match="no rate-limiter slot"):
        RateLimiter(second.config, backend=second).acquire()
    assert first.try_acquire() == 0.0  # first comes back: its turn was kept
    assert 0.4 < third.try_acquire() <= 0.52  # now third is behind nobody but the bucket


def _settings(backend):
    return {field.name: getattr(backend.config, field.name) for field in dataclasses.fields(backend.config)}


def test_a_head_that_times_out_leaves_the_queue(make_backend):
    other, quitter = make_backend(), make_backend(acquire_timeout_seconds=0.1)
    assert other.try_acquire() == 0.0
    with pytest.raises(LimiterAcquireError):
        RateLimiter(quitter.config, backend=quitter).acquire()  # held the front ticket, gave up
    # other is not held behind the ticket it left: it only waits for the bucket.
    assert 0.2 < other.try_acquire() <= 0.52


def test_closing_a_backend_removes_its_tickets(make_backend):
    other, leaving = make_backend(), make_backend()
    assert other.try_acquire() == 0.0
    assert leaving.try_acquire() > 0.2  # front ticket
    assert other.try_acquire() > 0 and queue_of(other)[0] != member_of(other)
    leaving.close()
    assert 0.2 < other.try_acquire() <= 0.52


def test_a_busy_process_cannot_starve_a_process_asking_once(make_backend):
    """Process A: 8 threads hammering. Process B asks once. A holds one ticket at a time
    (only its head asks), so at most one of A's starts comes between B's ask and B's
    start, however long A's backlog (8 x 0.1 s)."""
    interval = 0.1
    busy = RateLimiter(backend=make_backend(min_interval_seconds=interval))
    once = RateLimiter(backend=make_backend(min_interval_seconds=interval))
    busy_starts, lock, stop = [], threading.Lock(), threading.Event()

    def hammer():
        while not stop.is_set():
            with busy.slot() as slot:
                with lock:
                    busy_starts.append(slot.admitted_at)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        assert busy.wait_for_queued(6)
        asked = time.monotonic()
        with once.slot() as slot:
            pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    # A start A reserved before B asked lies at most one reservation horizon after the
    # ask (a head may reserve that far ahead): only later ones were admitted after B asked.
    horizon = reservation_horizon_seconds(once.config)
    cut_in = [t for t in busy_starts if asked + horizon < t < slot.admitted_at]
    assert len(cut_in) <= 1, ([round(t - asked, 3) for t in cut_in], slot.waited_seconds)
    assert slot.waited_seconds < 8 * interval, slot.waited_seconds  # one-sided: not A's backlog


CHILD = """
import json, sys, time
from cowork_llm.config import RateLimitConfig
from cowork_llm.rate_limiter.backends import build_backend

backend = build_backend(RateLimitConfig(**json.loads(sys.argv[1])))
backend.stale_ticket_seconds = float(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # the parent has just started an interval
print(backend.try_acquire(), flush=True)  # the front ticket: the bucket is busy
time.sleep(60)  # killed long before
"""


def test_a_killed_process_holds_the_queue_only_until_its_ticket_goes_stale(make_backend):
    survivor = make_backend(min_interval_seconds=0.5)
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(_settings(survivor)), str(STALE)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert child.stdout.readline() == b"ready\n"  # started and connected
        assert survivor.try_acquire() == 0.0
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert float(child.stdout.readline()) > 0  # queued at the front, then waits
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        assert survivor.try_acquire() > 0  # the dead ticket is in front
        assert queue_of(survivor)[0] != member_of(survivor)
        slot = RateLimiter(survivor.config, backend=survivor).acquire()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdin.close()
        child.stdout.close()
    # Alive for STALE after its last ask, plus the 0.5 s it was told to wait; then skipped.
    assert slot.admitted_at - killed < STALE + 0.5 + 2.0, slot.admitted_at - killed
    slot.release()


def test_withdraw_never_raises_when_redis_is_gone(caplog):
    with redis_server(password="queue-pw-777") as url:
        config = RateLimitConfig(backend="redis", redis_url=url, key="gone", min_interval_seconds=1)
        other, waiting = build_backend(config), build_backend(config)
        assert other.try_acquire() == 0.0 and waiting.try_acquire() > 0
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        waiting.withdraw()  # on the way out of another failure: must not hide it
    assert "could not leave the shared queue" in caplog.text
    assert "; the other members skip this ticket after 5.0 s" in caplog.text  # the default
    assert "queue-pw-777" not in caplog.text
    other.close()
    waiting.close()
