"""One SQLite transaction per hold of the ``sqlite`` backend's file lock.

An ask writes to several tables (the queue, pyrate-limiter's request log, the token
state, the provider view), and each writer commits as it goes: pyrate's bucket commits
in ``put()``. In WAL mode every commit appends to the log and takes its locks: four
commits per admission were a third of the backend's CPU per request (measured: 77 µs
each on this machine). The file lock already makes the whole hold atomic between
members, so the writes of one outermost hold are committed once, when it ends, and
rolled back when it ends with an exception (nothing half-done is left: an ask
interrupted after recording its start does not keep the start).
"""

import logging
import sqlite3
from types import TracebackType
from typing import Any, Callable, Optional, Type

__all__ = ["DeferredCommitConnection", "TransactionLock"]

logger = logging.getLogger(__name__)


class DeferredCommitConnection(sqlite3.Connection):
    """A connection whose ``commit()`` waits for the end of the file lock's outermost
    hold while :attr:`deferring` (set by :class:`TransactionLock`)."""

    deferring = False

    def commit(self) -> None:
        if not self.deferring:
            super().commit()

    def commit_now(self) -> None:
        """Commit even inside a hold (to keep a write an exception would roll back)."""
        super().commit()


class TransactionLock:
    """``lock`` (the reentrant file lock), with one transaction per outermost hold.

    ``connection()`` gives the backend's current connection (None once closed; a
    connection reopened inside a hold commits as it goes). Leaving the outermost hold
    raises sqlite3.Error when the commit fails (the transaction is rolled back first).
    """

    def __init__(self, lock: Any, connection: Callable[[], Optional[sqlite3.Connection]]) -> None:
        self.lock = lock
        self._connection = connection

    def _outermost(self) -> bool:
        # FlockLock counts its nested holds; a lock that does not (filelock, on Windows)
        # ends a transaction at every exit, which is committing as it goes.
        return getattr(self.lock, "_depth", 1) == 1

    def __enter__(self) -> "TransactionLock":
        self.lock.acquire()
        if self._outermost():
            conn = self._connection()
            if isinstance(conn, DeferredCommitConnection):
                conn.deferring = True
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            if self._outermost():
                self._end(committed=exc_type is None)
        finally:
            self.lock.release()

    def _end(self, committed: bool) -> None:
        conn = self._connection()
        if conn is None:
            return
        if isinstance(conn, DeferredCommitConnection):
            conn.deferring = False
        if not conn.in_transaction:
            return
        if committed:
            try:
                conn.commit()
                return
            except sqlite3.Error:
                _rollback_quietly(conn)
                raise
        _rollback_quietly(conn)


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.rollback()
    except sqlite3.Error as error:  # the error being raised is the one to report
        logger.debug("rollback failed: %s", error)
