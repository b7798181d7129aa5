"""The sqlite limiter backend: one limit per (file, key) across backends (each backend
here stands for a process: its own connection and its own file lock), the shared pause,
the filelock 4.x trap avoided, and clear errors for a file it cannot use."""

import logging
import sqlite3
import threading
import time

import pytest
from pyrate_limiter import Limiter, Rate, SQLiteBucket

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterAcquireError, LimiterBackendError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter.backends import build_backend
from cowork_llm.rate_limiter.backends.sqlite import SQLiteBackend


@pytest.fixture
def make_backend(tmp_path):
    made = []

    def make(path=None, **settings):
        settings.setdefault("min_interval_seconds", 1.0)
        config = RateLimitConfig(backend="sqlite", path=str(path or tmp_path / "limits.sqlite"), **settings)
        backend = build_backend(config)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_two_members_share_one_interval(make_backend):
    first, second = make_backend(), make_backend()
    assert isinstance(first, SQLiteBackend)
    assert first.try_acquire() == 0.0
    wait = second.try_acquire()
    assert 0.9 < wait <= 1.02, wait  # the other member's start counts: about 1 s to go
    # second now holds the front ticket of the shared queue: first asks again when
    # second's turn has come, not before.
    assert 0.45 < first.try_acquire() <= 0.5  # (bounded: an estimate can be wrong)


def test_keys_are_separate_limits_in_one_file(make_backend):
    assert make_backend(key="alpha").try_acquire() == 0.0
    assert make_backend(key="beta").try_acquire() == 0.0
    assert make_backend(key="it's \"quoted\"; DROP TABLE x").try_acquire() == 0.0  # names are safe





def test_pyrates_non_blocking_path_breaks_with_filelock_4_and_ours_does_not(tmp_path, make_backend):
    """The trap: pyrate's Limiter calls ``lock.acquire(False)`` for a non-blocking
    acquire, which filelock 4 rejects. This canary shows the trap is real here; the
    backend never takes that path."""
    path = str(tmp_path / "bare.sqlite")
    bucket = SQLiteBucket.init_from_file([Rate(1, 1000)], db_path=path, use_file_lock=True)
    with Limiter(bucket) as limiter:
        with pytest.raises(TypeError, match="timeout must be a number"):
            limiter.try_acquire("x", blocking=False)
    bucket.close()
    backend = make_backend(path=tmp_path / "ours.sqlite")
    assert backend.try_acquire() == 0.0
    assert backend.try_acquire() > 0


def test_threads_of_two_members_hammering_one_file_keep_the_interval(make_backend):
    interval = 0.02
    limiters = [RateLimiter(b.config, backend=b) for b in
                (make_backend(min_interval_seconds=interval) for _ in range(2))]
    for limiter in limiters:  # keep every row: they are the measurement
        limiter.backend._leak_now_and_then = lambda now_ms: None

    def worker(limiter):
        for _ in range(4):
            with limiter.slot():
                pass

    threads = [threading.Thread(target=worker, args=(limiters[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Measured at admission: the start times the file recorded (a clock read in the
    # thread after its slot would add the machine's scheduling delays, not the limiter's).
    backend = limiters[0].backend
    admitted = sorted(row[0] / 1e6 for row in backend._connection().execute(  # microseconds
        f"SELECT item_timestamp FROM '{backend._requests.table}'"))
    assert len(admitted) == 32
    gaps = [b - a for a, b in zip(admitted, admitted[1:], strict=False)]
    assert min(gaps) >= interval, sorted(gaps)[:3]


def test_a_directory_is_not_a_usable_file(tmp_path):
    with pytest.raises(LimiterBackendError, match=str(tmp_path)) as caught:
        build_backend(RateLimitConfig(backend="sqlite", path=str(tmp_path)))
    assert "sqlite" in str(caught.value) and "llm.rate_limit.path" in str(caught.value)


def test_a_file_under_a_regular_file_is_an_error_naming_the_path(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(LimiterBackendError, match="not-a-dir/limits.sqlite"):
        build_backend(RateLimitConfig(backend="sqlite", path=str(blocker / "limits.sqlite")))


def test_a_garbage_file_is_an_error_not_a_fallback(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LimiterBackendError, match="garbage.sqlite") as caught:
        build_backend(RateLimitConfig(backend="sqlite", path=str(garbage)))
    assert isinstance(caught.value, LimiterAcquireError)  # the documented parent
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_a_failure_after_opening_names_the_file(make_backend, tmp_path):
    backend = make_backend()
    backend._conn.execute(f"DROP TABLE {backend._requests.table}")  # the store breaks under us
    with pytest.raises(LimiterBackendError, match="limits.sqlite"):
        backend.try_acquire()


def test_closed_backend_refuses(make_backend):
    backend = make_backend()
    backend.close()
    backend.close()  # twice is harmless
    for _ in range(2):  # every time, not only the first
        with pytest.raises(LimiterBackendError, match="closed"):
            backend.try_acquire()
        backend.withdraw()  # giving up after that failure is quiet
    backend.close()


def test_a_pause_holds_its_seconds_rounded_up_to_the_millisecond_and_no_more(make_backend):
    # Stored in whole milliseconds: rounded up, so a pause never ends early, and by at most
    # the one millisecond, so a Retry-After of s seconds holds the group s seconds, not longer.
    backend = make_backend()
    for _ in range(30):
        asked = time.time()
        backend.pause(0.5)
        left = backend.pause_remaining()
        read = time.time()
        assert read + left >= asked + 0.5  # it ends no earlier than 0.5 s after the call
        assert 0.4 < left <= 0.5 + 0.001, left


def test_any_key_is_a_limit_of_its_own_quotes_and_all(make_backend):
    # The key names tables pasted into SQL: quotes, spaces, slashes and dashes must not
    # break it, and keys alike once made readable stay separate limits.
    keys = ["team's gpt-4o / eu", "team_s gpt_4o _ eu", 'say "hi"; DROP TABLE x']
    backends = [make_backend(key=key) for key in keys]
    for backend in backends:
        assert backend.try_acquire() == 0.0
    for backend in backends:
        assert backend.try_acquire() > 0.5  # its own interval, and only its own
        backend.withdraw()


def test_a_member_behind_another_sleeps_until_its_turn_can_come(make_backend):
    first, second = make_backend(), make_backend()  # 1 s interval
    assert first.try_acquire() == 0.0
    assert first.try_acquire() > 0.9  # the front of the queue, waiting for the interval
    # Behind it: nothing can happen for ~1 s, so it is told to ask again in the longest
    # sleep a member behind takes (half a second), not to poll.
    assert second.try_acquire() == pytest.approx(0.5)
    first.withdraw()
    second.withdraw()


def test_a_broken_queue_is_an_error_naming_the_file_and_leaving_it_is_logged(make_backend, caplog):
    backend = make_backend()
    with backend._guard():  # this thread holds a ticket (it was told to wait before)
        backend._keep_alive(backend._my_member(), 5000)
    backend._conn.execute("DROP TABLE cowork_llm_queue")  # the store breaks under us
    with caplog.at_level(logging.DEBUG, logger="cowork_llm.rate_limiter.backends.sqlite"):
        with pytest.raises(LimiterBackendError, match="limits.sqlite"):
            backend.try_acquire()
    # Its ticket could not be removed either: said at DEBUG, naming the file (the error
    # raised is the first failure's).
    assert f"leaving the queue of sqlite file {backend.path} after a failure: " in caplog.text
