"""Deadlines that hold however slowly a server drips bytes.

requests' read timeout applies to each socket read: a server sending one byte every
2 s keeps a request alive for ever under ``timeout=3`` (measured: 70 s and counting).
A :class:`Guard` is a deadline for one HTTP exchange; the sessions of
:class:`~cowork_llm.providers._sessions.SessionPool` use connections that report to the guard
of the request being sent in their thread, and one watchdog thread shuts down the socket
of every guard whose deadline passes. The blocked read then returns at once, the request
fails, and the caller asks :attr:`Guard.expired` to tell a timeout from a broken connection.

A stream's guard moves: each content piece pushes its idle deadline on (:meth:`touch`),
while its total deadline stays put.
"""

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any, List, Optional, Tuple

import requests.adapters
import urllib3.connection
import urllib3.connectionpool

__all__ = ["Guard", "GuardedAdapter", "guarding", "start_watchdog"]

logger = logging.getLogger(__name__)

_INF = float("inf")


class Guard:
    """A deadline for one exchange: ``deadline`` (monotonic) is final; ``idle_seconds``,
    when given, also ends it after that long without :meth:`touch`. ``what`` and
    ``idle_what`` say in an error message which bound ran out. Thread-safe."""

    def __init__(self, deadline: float, what: str, *, idle_seconds: Optional[float] = None,
                 idle_what: str = "") -> None:
        self._lock = threading.Lock()
        self._deadline = deadline
        self._idle = idle_seconds
        self._idle_deadline = time.monotonic() + idle_seconds if idle_seconds is not None else _INF
        self._held = False
        self._what, self._idle_what = what, idle_what
        self._connections: List[Any] = []
        self._done = False
        self.expired: Optional[str] = None  # which bound ran out, once the watchdog acted
        self.capped_at: Optional[float] = None  # set when a call's deadline cut the budget
        _watchdog.watch(self)

    def due(self) -> float:
        """The monotonic time at which the guard expires, or inf once it is done. While
        held, the idle bound keeps moving away (the watchdog looks again that much later)."""
        if self._done:
            return _INF
        idle = self._idle_deadline
        if self._held:
            idle = time.monotonic() + (self._idle or 0.0)
        return min(self._deadline, idle)

    def remaining(self) -> float:
        """Seconds until the guard expires (at least a millisecond, for socket timeouts)."""
        return max(0.001, self.due() - time.monotonic())

    def touch(self) -> None:
        """A content piece arrived, or the consumer asks for the next: the idle clock
        starts again. (It only ever moves later than the watchdog's queued time, so the
        watchdog needs no wake-up: it looks again when that time comes.)"""
        if self._idle is not None:
            self._idle_deadline = time.monotonic() + self._idle
            self._held = False

    def hold(self) -> None:
        """The consumer has the stream's attention: no idle clock until :meth:`touch`."""
        if self._idle is not None:
            self._held = True

    def attach(self, connection: Any) -> None:
        """``connection`` (a urllib3 connection) carries this exchange: shut it down on expiry."""
        with self._lock:
            if connection not in self._connections:
                self._connections.append(connection)
            expired = self.expired is not None
        if expired:
            _shutdown(connection)

    def done(self) -> None:
        """The exchange is over: the watchdog will not touch its connections any more."""
        with self._lock:
            self._done = True
            self._connections.clear()

    def _expire(self, now: float) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = self._what if now >= self._deadline else self._idle_what
            self._done = True
            connections, self._connections = self._connections, []
        logger.debug("deadline passed (%s): dropping the connection", self.expired)
        for connection in connections:
            _shutdown(connection)

    def __enter__(self) -> "Guard":
        _current.guard = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _current.guard = None


def _shutdown(connection: Any) -> None:
    # http.client lets go of the socket (sock = None) when a response will end with the
    # connection (no length, no chunks, "Connection: close"): the response reads on from
    # the socket the connection opened, which is the one to shut down.
    sock = getattr(connection, "sock", None) or getattr(connection, "_guarded_sock", None)
    if sock is None:
        return
    try:
        # shutdown, not close: it wakes a read blocked in another thread, and the file
        # descriptor stays ours until the connection is closed the ordinary way.
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing to wake


class _Watchdog:
    """One daemon thread that expires guards in deadline order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int, Guard]] = []
        self._order = itertools.count()
        self._order_since_compact = 0
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread now (a client does at construction), so the first request
        does not pay for it."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cowork_llm-deadlines", daemon=True)
                self._thread.start()

    def watch(self, guard: Guard) -> None:
        with self._cond:
            due = guard.due()
            if len(self._heap) > 1024 and self._order_since_compact > len(self._heap):
                self._compact()
            self._order_since_compact += 1
            earliest = not self._heap or due < self._heap[0][0]
            heapq.heappush(self._heap, (due, next(self._order), guard))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cowork_llm-deadlines", daemon=True)
                self._thread.start()
            if earliest:  # the thread sleeps until the old head's time: wake it to look again
                self._cond.notify()

    def _compact(self) -> None:
        """Forget finished guards (they stay queued until their time otherwise: many calls
        per second would keep thousands)."""
        self._heap = [entry for entry in self._heap if entry[2].due() != _INF]
        heapq.heapify(self._heap)
        self._order_since_compact = 0

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].due() == _INF:
                    heapq.heappop(self._heap)  # finished: forget it now, not at its deadline
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, guard = self._heap[0]
                now = time.monotonic()
                if due > now:
                    self._cond.wait(due - now)
                    continue
                heapq.heappop(self._heap)
                actual = guard.due()
                if actual == _INF:
                    continue  # done: forget it
                if actual > now:  # touched since it was queued: look again later
                    heapq.heappush(self._heap, (actual, next(self._order), guard))
                    continue
                self._cond.release()  # shutting sockets down must not block watch()
                try:
                    guard._expire(now)
                finally:
                    self._cond.acquire()

    def after_fork(self) -> None:
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None


_watchdog = _Watchdog()
_current = threading.local()  # the guard of the request this thread is sending

if hasattr(os, "register_at_fork"):  # the child has no watchdog thread
    os.register_at_fork(after_in_child=_watchdog.after_fork)


def start_watchdog() -> None:
    """Start the watchdog thread unless it runs. Raises nothing."""
    _watchdog.start()


def guarding() -> Optional[Guard]:
    """The guard of the request this thread is sending, if any."""
    return getattr(_current, "guard", None)


# --- connections that report to the current guard -----------------------------------------


class _GuardedMixin:
    def connect(self) -> None:
        guard = guarding()
        if guard is not None:
            guard.attach(self)
        super().connect()  # type: ignore[misc]
        self._guarded_sock = getattr(self, "sock", None)  # see _shutdown
        if guard is not None and guard.expired is not None:
            _shutdown(self)  # expired while connecting: the socket appeared too late

    def request(self, *args: Any, **kwargs: Any) -> Any:
        guard = guarding()
        if guard is not None:
            guard.attach(self)
        if getattr(self, "sock", None) is None:
            # Connect before the request head is built: http.client would connect from
            # inside send(), whose frame holds the head's bytes (the key among them), and
            # a refused connection's traceback would carry them to any error reporter
            # that records locals.
            self.connect()
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_GuardedMixin, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_GuardedMixin, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connections a :class:`Guard` can shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
