"""A hostile store under the shared limiter: SQLite failing mid-transaction, its file
deleted or replaced under running members, a lock holder stopped (SIGSTOP); Redis
flushed, restarted without persistence, stalled. Each asserts a bounded time, one limit
(never two silently) and a clear error."""

import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterBackendError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter.backends import build_backend


@pytest.fixture
def sqlite_members(tmp_path):
    made = []

    def make(**settings):
        settings.setdefault("min_interval_seconds", 0.5)
        backend = build_backend(RateLimitConfig(backend="sqlite", path=str(tmp_path / "l.sqlite"),
                                                key="hostile", **settings))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# --- SQLite -----------------------------------------------------------------------------

def test_an_error_between_write_and_commit_rolls_back_and_frees_the_others(sqlite_members):
    failing, other = sqlite_members(), sqlite_members()
    real_put = failing._put_request

    def put_then_fail(item):
        failing._connection().execute(
            "INSERT INTO cowork_llm_pause (key, until_ms) VALUES ('x', 1) "
            "ON CONFLICT(key) DO UPDATE SET until_ms = 2")  # the WAL write lock is now ours
        raise sqlite3.OperationalError("disk I/O error (injected)")

    failing._put_request = put_then_fail
    with pytest.raises(LimiterBackendError, match="disk I/O error"):
        failing.try_acquire()
    assert not failing._connection().in_transaction
    other._lock.lock.timeout = 2.0
    started = time.monotonic()
    assert other.try_acquire() == 0.0  # not "database is locked"
    assert time.monotonic() - started < 1.0
    failing._put_request = real_put
    assert failing.try_acquire() > 0.3  # and the failing member still shares the limit


@pytest.mark.parametrize("how", ["delete-all", "delete-db-only", "replace"])
def test_a_deleted_or_replaced_file_is_reopened_never_two_limits(sqlite_members, tmp_path, caplog, how):
    old = sqlite_members()
    assert old.try_acquire() == 0.0
    path = old.path
    if how == "delete-all":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
    elif how == "delete-db-only":
        os.unlink(path)  # -wal and -shm left behind
    else:
        shutil.copy(path, tmp_path / "copy.sqlite")
        os.replace(tmp_path / "copy.sqlite", path)
    started = time.monotonic()
    new = sqlite_members()  # a process started after the deletion
    assert time.monotonic() - started < 2.0  # not wedged on the old -wal/-shm
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        first_new = new.try_acquire()
        # The old member notices, moves to the new file and holds one full interval
        # (or, in a copy holding its own ticket, queues behind the new member).
        assert old.try_acquire() > (0 if how == "replace" else 0.3)
    assert "deleted or replaced" in caplog.text
    assert first_new == 0.0 or how == "replace"  # a replaced copy keeps its rows
    # One limit: whoever asks next is told to wait, on either side.
    assert new.try_acquire() > 0 and old.try_acquire() > 0


STOPPED_HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_stopped_lock_holder_gives_each_waiter_its_error_at_the_lock_timeout(sqlite_members):
    member = sqlite_members()
    holder = subprocess.Popen([sys.executable, "-c", STOPPED_HOLDER, member.path + ".lock"],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        os.kill(holder.pid, signal.SIGSTOP)
        member._lock.lock.timeout = 1.0
        limiter = RateLimiter(member.config, backend=member)
        started = time.monotonic()
        with pytest.raises(LimiterBackendError, match="sqlite file"):
            limiter.acquire()
        elapsed = time.monotonic() - started
        # Once, at the lock timeout: the error path (withdraw) does not take the lock again.
        assert 0.9 < elapsed < 1.8, elapsed
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        holder.stdout.close()
    assert member.try_acquire() == 0.0  # healthy again once the holder is gone


# --- Redis ------------------------------------------------------------------------------

@pytest.fixture
def redis_members():
    made = []
    with redis_server() as url:
        def make(**settings):
            settings.setdefault("min_interval_seconds", 0.5)
            backend = build_backend(RateLimitConfig(backend="redis", redis_url=url, key="hostile",
                                                    **settings))
            made.append(backend)
            return backend
        make.url = url
        yield make
        for backend in made:
            backend.close()


@pytest.mark.redis
def test_flushed_redis_state_holds_the_group_one_full_interval_with_one_warning(redis_members, caplog):
    first, second = redis_members(), redis_members()
    for _ in range(3):
        assert first.try_acquire() == 0.0
        assert second.try_acquire() > 0  # the group knows this state
        second.withdraw()
        first._client.flushall()  # with script_flush: what a restart without persistence looks like
        first._client.script_flush()
        with caplog.at_level(logging.WARNING, logger="cowork_llm"):
            assert second.try_acquire() >= 0.49  # a full interval from now, not what is left
            assert first.try_acquire() > 0.3 and first.pause_remaining() > 0.3
        second.withdraw()
        first.withdraw()
        time.sleep(0.6)  # the conservative interval is over: starts resume
    warnings = [r for r in caplog.records if "was lost (Redis flushed" in r.getMessage()]
    assert len(warnings) == 6  # one per member per loss, never one per ask
    assert re.search(r"holding this group's starts for one full interval \(0\.5\d\d s\)$",
                     warnings[0].getMessage()), warnings[0].getMessage()


@pytest.mark.redis
def test_a_stalled_redis_fails_once_at_the_socket_timeout_and_leaves_no_ghost(redis_members, monkeypatch):
    from cowork_llm.rate_limiter.backends import redis as redis_module
    monkeypatch.setattr(redis_module, "_SOCKET_TIMEOUT_SECONDS", 1.0)
    front, stalled = redis_members(), redis_members()
    assert front.try_acquire() == 0.0
    pid = int(stalled._client.info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        limiter = RateLimiter(stalled.config, backend=stalled)
        started = time.monotonic()
        with pytest.raises(LimiterBackendError):
            limiter.acquire()
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert elapsed < 1.9, elapsed  # one socket timeout, not a second one in withdraw()
    # The stalled script ran when Redis resumed, after its ask had expired: no ticket.
    queue = front._keys["queue"]
    assert front._client.zcard(queue) == 0, front._client.zrange(queue, 0, -1)
