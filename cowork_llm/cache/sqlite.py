"""The SQLite response cache: one file shared by threads and processes.

WAL mode lets readers work while one process writes; the busy timeout makes a writer wait
for another instead of failing. Inside a process one connection is shared under a lock
(a cache lookup is tiny next to the HTTP call it spares).

Failures never reach the caller:

- a file that is not a database, or a damaged one, is moved aside to
  ``<path>.corrupt-<timestamp>`` (never deleted: it is the user's file) with a WARNING,
  and a fresh cache is started in its place;
- a file that cannot be opened at all (a directory, no permission, locked for longer than
  the busy timeout) gives a WARNING and an in-memory cache for the rest of this process;
- an error during a lookup or a store (disk full, locked) gives a WARNING and a miss.

Entries expire ``ttl_seconds`` after they were stored (wall-clock time, shared by all
processes); beyond ``max_entries`` the oldest stored go first.
"""

import logging
import os
import sqlite3
import threading
import time
from typing import Optional, Union

from ..results import ChatResult
from .base import Clock, ResponseCache, result_from_json, result_to_json
from .memory import MemoryCache

__all__ = ["SqliteCache"]

logger = logging.getLogger(__name__)

_TABLE = "cowork_llm_responses"  # a distinctive name, should the path point at another database
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} "
    "(key TEXT PRIMARY KEY, stored_at REAL NOT NULL, result TEXT NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_stored_at ON {_TABLE} (stored_at)",
)


def _is_corrupt(error: BaseException) -> bool:
    # "file is not a database" and "database disk image is malformed" are plain
    # DatabaseError; locked, read-only, disk full, cannot open are OperationalError and
    # say nothing about the file's contents.
    return type(error) is sqlite3.DatabaseError


class SqliteCache(ResponseCache):
    """A response cache in the SQLite file at ``path`` (its directory is created).

    ``clock`` gives wall-clock seconds (injectable for tests). Never raises after
    construction, nor at construction for an unusable file (see the module docstring).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, max_entries: int = 10000,
                 ttl_seconds: float = 86400.0, clock: Clock = time.time,
                 busy_timeout_seconds: float = 5.0) -> None:
        if max_entries < 1 or not ttl_seconds > 0:
            raise ValueError("max_entries must be at least 1 and ttl_seconds greater than 0")
        self.path = os.fspath(path)
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._busy_timeout = busy_timeout_seconds
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = None
        self._pid = 0
        self._inode: Optional[int] = None
        self._fallback: Optional[MemoryCache] = None
        self._failing = False  # warn once per run of failures, not once per call
        self._closed = False
        with self._lock:
            self._connection()

    # --- ResponseCache -----------------------------------------------------------------

    def get(self, key: str) -> Optional[ChatResult]:
        with self._lock:
            conn = self._connection()
            if conn is None:
                return self._fallback.get(key) if self._fallback else None
            try:
                row = conn.execute(f"SELECT stored_at, result FROM {_TABLE} WHERE key = ?",
                                   (key,)).fetchone()
            except sqlite3.Error as error:
                self._failed("read from", error)
                return None
            self._failing = False
            if row is None or self._clock() - row[0] >= self.ttl_seconds:
                return None  # an expired row is swept by the next put
            try:
                return result_from_json(row[1])
            except ValueError as error:
                logger.warning("response cache %s: dropping a damaged entry (%s)", self.path, error)
                self._delete(conn, key)
                return None

    def put(self, key: str, result: ChatResult) -> None:
        text = result_to_json(result)
        with self._lock:
            conn = self._connection()
            if conn is None:
                if self._fallback is not None:
                    self._fallback.put(key, result)
                return
            now = self._clock()
            try:
                conn.execute("BEGIN IMMEDIATE")  # take the write lock now, waiting up to busy_timeout
                try:
                    conn.execute(f"INSERT OR REPLACE INTO {_TABLE} (key, stored_at, result) "
                                 "VALUES (?, ?, ?)", (key, now, text))
                    conn.execute(f"DELETE FROM {_TABLE} WHERE stored_at <= ?", (now - self.ttl_seconds,))
                    conn.execute(
                        f"DELETE FROM {_TABLE} WHERE key IN (SELECT key FROM {_TABLE} "
                        "ORDER BY stored_at DESC, rowid DESC LIMIT -1 OFFSET ?)",
                        (self.max_entries,),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                self._failed("write to", error)
                return
            self._failing = False

    def __len__(self) -> int:
        with self._lock:
            conn = self._connection()
            if conn is None:
                return len(self._fallback) if self._fallback else 0
            try:
                return int(conn.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])
            except sqlite3.Error as error:
                self._failed("count entries in", error)
                return 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    @property
    def in_memory_fallback(self) -> bool:
        """True when the file could not be used and entries live in memory instead."""
        return self._fallback is not None

    # --- the connection ----------------------------------------------------------------

    def _connection(self) -> Optional[sqlite3.Connection]:
        """The open connection, opening (or replacing a corrupt file) as needed; None
        when closed or fallen back to memory. Called with the lock held."""
        if self._closed or self._fallback is not None:
            return None
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # First use, or a forked child: a SQLite connection must not cross a fork, so the
        # child abandons the parent's (closing it could disturb the parent's locks).
        self._conn = None
        try:
            self._conn = self._open_when_free()
        except (sqlite3.Error, OSError) as error:
            if not _is_corrupt(error):
                self._fall_back(error)
                return None
            self._move_aside(error)
            try:
                self._conn = self._open_when_free()
            except (sqlite3.Error, OSError) as again:
                self._fall_back(again)
                return None
        self._pid = os.getpid()
        return self._conn

    def _open_when_free(self) -> sqlite3.Connection:
        """:meth:`_open`, tried again for up to ``busy_timeout_seconds`` while it meets
        "database is locked". Two processes opening a new cache file at the same moment
        (one switching it to WAL and creating the table while the other looks) once left
        one of them caching in memory for its whole run (seen in CI); SQLite's own busy
        wait does not cover every step of opening. Raises what _open raises."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.01)

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        try:
            self._inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self._inode = None
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in put).
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable enough for a cache
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"SELECT key, stored_at, result FROM {_TABLE} LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        if self._inode is None:
            self._inode = os.stat(self.path).st_ino
        return conn

    def _fall_back(self, error: BaseException) -> None:
        logger.warning("response cache %s cannot be used (%s: %s); caching in memory for this "
                       "process instead", self.path, type(error).__name__, error)
        self._fallback = MemoryCache(max_entries=self.max_entries, ttl_seconds=self.ttl_seconds,
                                     clock=self._clock)

    def _move_aside(self, error: BaseException) -> None:
        """Rename a corrupt file (and its -wal/-shm companions) out of the way."""
        try:
            if self._inode is not None and os.stat(self.path).st_ino != self._inode:
                return  # another process already replaced it with a fresh cache
        except FileNotFoundError:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        target = f"{self.path}.corrupt-{stamp}"
        logger.warning("response cache %s is damaged (%s); moved it to %s and started a fresh "
                       "cache", self.path, error, target)
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, target + suffix)
            except FileNotFoundError:
                pass

    def _failed(self, action: str, error: sqlite3.Error) -> None:
        """Deal with an error during a lookup or a store: replace a corrupt file,
        otherwise warn (once per run of failures) and carry on without the cache."""
        if _is_corrupt(error):
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None
            self._move_aside(error)
            self._connection()
            return
        log = logger.debug if self._failing else logger.warning
        log("response cache %s: could not %s it (%s: %s); treating it as a miss",
            self.path, action, type(error).__name__, error)
        self._failing = True

    def _delete(self, conn: sqlite3.Connection, key: str) -> None:
        try:
            conn.execute(f"DELETE FROM {_TABLE} WHERE key = ?", (key,))
        except sqlite3.Error as error:
            self._failed("delete an entry from", error)
