"""The sqlite backend's lock between processes (flock on ``<path>.lock``): exclusive
between threads and between processes, reentrant in its thread, bounded, and still
exclusive when the lock file is deleted while in use."""

import multiprocessing
import os
import threading
import time

import pytest

from cowork_llm.rate_limiter.backends._file_lock import FlockLock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="flock is POSIX")


def hold_and_count(path, counter_path, rounds):
    """In a child process: increment a counter file under the lock, read-modify-write
    with a pause in between, so two holders at once would lose increments."""
    lock = FlockLock(path, timeout=30, poll_interval=0.0005)
    for _ in range(rounds):
        with lock:
            with open(counter_path) as f:
                value = int(f.read())
            time.sleep(0.0002)
            with open(counter_path, "w") as f:
                f.write(str(value + 1))


def test_sixteen_threads_and_three_processes_never_hold_it_together(tmp_path):
    path, counter = str(tmp_path / "x.lock"), tmp_path / "counter"
    counter.write_text("0")
    lock = FlockLock(path, timeout=30, poll_interval=0.0005)
    children = [multiprocessing.get_context("spawn").Process(
        target=hold_and_count, args=(path, str(counter), 40)) for _ in range(3)]
    for child in children:
        child.start()

    def worker():
        for _ in range(20):
            with lock:
                with lock:  # reentrant in its thread
                    value = int(counter.read_text())
                    time.sleep(0.0002)
                    counter.write_text(str(value + 1))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0, 0]
    assert int(counter.read_text()) == 16 * 20 + 3 * 40  # no increment lost


def test_a_lock_held_elsewhere_times_out_naming_the_file(tmp_path):
    path = str(tmp_path / "x.lock")
    holder = FlockLock(path, timeout=5, poll_interval=0.001)
    waiter = FlockLock(path, timeout=0.2, poll_interval=0.001)  # another process's view
    with holder:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=path):
            waiter.acquire()
        assert 0.2 <= time.monotonic() - started < 2
    with waiter:  # free again once the holder let go
        pass


def test_a_waiter_on_a_deleted_lock_file_moves_to_the_new_one(tmp_path):
    # Deleting the lock file while it is held cannot be fully undone (a newcomer locks a
    # new file at once), but a member that was already waiting must not come out holding
    # the old, unreachable file while the newcomer holds the new one.
    path = str(tmp_path / "x.lock")
    first, second, third = (FlockLock(path, 5, 0.001) for _ in range(3))
    events = []
    first.acquire()

    def wait_on_old_file():
        with second:
            events.append("second in")
    waiter = threading.Thread(target=wait_on_old_file)
    waiter.start()
    time.sleep(0.1)  # second is now polling the old file's flock
    os.unlink(path)
    third.acquire()  # a newcomer: locks a new file at the path
    first.release()  # the old file is free: second gets it, sees it is not the path's
    time.sleep(0.2)
    events.append("third out")
    third.release()
    waiter.join(5)
    assert events == ["third out", "second in"]


def test_a_child_forked_while_the_lock_is_held_starts_with_it_free(tmp_path):
    path = str(tmp_path / "x.lock")
    lock = FlockLock(path, timeout=5, poll_interval=0.001)
    released = threading.Event()
    holding = threading.Event()

    def hold():
        with lock:
            holding.set()
            released.wait(10)
    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: the holder thread does not exist here
        code = 1
        try:
            lock.timeout = 3
            with lock:  # waits for the parent's flock, then gets it
                code = 0
        finally:
            os._exit(code)
    time.sleep(0.1)
    released.set()
    thread.join(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_lock_held_by_another_thread_times_out_naming_the_file_then_is_free(tmp_path):
    path = str(tmp_path / "x.lock")
    lock = FlockLock(path, timeout=0.2, poll_interval=0.001)
    holding, done = threading.Event(), threading.Event()

    def hold():
        with lock:
            holding.set()
            done.wait(10)
    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"another thread held the lock {path} for 0.2 s"):
        lock.acquire()
    assert 0.2 <= time.monotonic() - started < 2
    done.set()
    holder.join(5)
    other_process = FlockLock(path, timeout=0.05, poll_interval=0.001)
    with lock:  # the failed attempt left nothing held
        with lock:
            pass
        with pytest.raises(TimeoutError):  # leaving the inner hold kept the file locked
            other_process.acquire()
    with other_process:  # leaving the outer one let it go
        pass


def test_the_lock_file_is_created_readable_by_all_and_writable_by_its_owner(tmp_path):
    path = tmp_path / "x.lock"
    old = os.umask(0o022)
    try:
        with FlockLock(str(path), timeout=1, poll_interval=0.001):
            pass
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_waiter_on_a_deleted_lock_file_that_nobody_recreated_locks_a_new_one(tmp_path):
    # The holder's file is deleted and nobody has opened the path since: the waiter that
    # gets the old file's flock must not keep it (it excludes nobody who opens the path).
    path = str(tmp_path / "x.lock")
    first, second = FlockLock(path, 5, 0.001), FlockLock(path, 5, 0.001)
    newcomer = FlockLock(path, 0.2, 0.001)
    first.acquire()
    inside, leave = threading.Event(), threading.Event()

    def wait_on_old_file():
        with second:
            inside.set()
            leave.wait(10)
    waiter = threading.Thread(target=wait_on_old_file)
    waiter.start()
    time.sleep(0.1)  # second is polling the old file's flock
    os.unlink(path)
    first.release()
    assert inside.wait(5)
    try:
        with pytest.raises(TimeoutError):  # second holds the file now at the path
            newcomer.acquire()
    finally:
        leave.set()
        waiter.join(5)
    with newcomer:
        pass
