"""The deadline watchdog (cowork_llm.providers._guard): a guard that passes its deadline
shuts its connections down, one that finished first never does — with many threads making
guards at once. The real-socket path is in tests/reliability/test_hostile_server.py."""

import threading
import time

from cowork_llm.providers._guard import Guard


class FakeSocket:
    def __init__(self):
        self.shut_at = None

    def shutdown(self, how):
        self.shut_at = time.monotonic()


class FakeConnection:
    def __init__(self):
        self.sock = FakeSocket()


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a recorded fact
    return predicate()


def test_an_expired_guard_shuts_its_connection_and_says_which_bound():
    connection = FakeConnection()
    started = time.monotonic()
    guard = Guard(started + 0.2, "the total bound")
    guard.attach(connection)
    assert wait_until(lambda: connection.sock.shut_at is not None, 5)
    assert connection.sock.shut_at - started >= 0.19
    assert guard.expired == "the total bound"


def test_a_finished_guard_never_touches_its_connection():
    connection = FakeConnection()
    guard = Guard(time.monotonic() + 0.1, "total")
    guard.attach(connection)
    guard.done()
    later = Guard(time.monotonic() + 0.3, "later")  # the watchdog passes the first one's time
    later.attach(FakeConnection())
    assert wait_until(lambda: later.expired is not None, 5)
    assert connection.sock.shut_at is None and guard.expired is None


def test_idle_bound_moves_with_touch_and_stops_while_held():
    connection = FakeConnection()
    started = time.monotonic()
    guard = Guard(started + 1.0, "total", idle_seconds=0.15, idle_what="idle")
    guard.attach(connection)
    for _ in range(4):  # touched every 0.05 s for 0.2 s: longer than one idle period
        time.sleep(0.05)
        guard.touch()
    guard.hold()  # the consumer has the piece: no idle clock
    time.sleep(0.3)
    assert guard.expired is None
    guard.touch()
    assert wait_until(lambda: guard.expired is not None, 5)
    assert guard.expired == "idle" and time.monotonic() - started < 1.0


def test_many_threads_making_guards_at_once():
    threads_count, per_thread = 16, 100
    barrier = threading.Barrier(threads_count)
    wrong = []
    expired = []

    def work(n):
        barrier.wait()
        for i in range(per_thread):
            connection = FakeConnection()
            if i % 2:  # finishes long before its deadline
                guard = Guard(time.monotonic() + 0.3, "total")
                guard.attach(connection)
                guard.done()
                if connection.sock.shut_at is not None or guard.expired is not None:
                    wrong.append(("finished but cut", n, i))
            else:  # left to expire
                due = time.monotonic() + 0.05
                guard = Guard(due, "total")
                guard.attach(connection)
                expired.append((guard, connection, due))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wrong == []
    assert wait_until(lambda: all(c.sock.shut_at is not None for _, c, _ in expired), 10)
    assert all(g.expired == "total" for g, _, _ in expired)
    assert all(c.sock.shut_at >= due - 0.001 for _, c, due in expired)  # never early
