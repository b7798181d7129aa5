"""The ``sqlite`` limiter backend: one limit for every process on this machine that uses
the same ``[llm.rate_limit] path`` and ``key``.

The file holds four things per key: pyrate-limiter's ``SQLiteBucket`` table (one row
per request start), the token bucket's state (one row, see :class:`SQLiteStateStore`),
the pause (one row: the wall-clock time until which nobody may start) and the shared
queue of the processes' heads (:mod:`._ticket_queue`: one row per waiting
process, its ticket an AUTOINCREMENT number, with the wall-clock time until which it
counts as alive). Every read-modify-write runs under the bucket's file lock
(``<path>.lock``), so one attempt (queue, pause, tokens, request) is atomic across
processes. Timestamps are wall-clock milliseconds: the processes of one machine share
that clock.
"""

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, TypeVar

from pyrate_limiter import SQLiteBucket, StateBucket, TokenBucket
from pyrate_limiter.buckets.sqlite_bucket import Queries
from pyrate_limiter.clocks import WallClock

from ...config._sections import RateLimitConfig
from ...errors import LimiterBackendError
from .._rates import (
    REQUEST_LOG_UNITS_PER_SECOND,
    lost_state_pause_seconds,
    request_log_rates,
    reservation_lead_seconds,
    token_rates,
)
from ._file_lock import file_lock
from ._leases import LeaseKeeper
from ._provider_store import SQLITE_CREATE, sqlite_update
from ._sqlite_state import TOKEN_TABLE as _TOKEN_TABLE
from ._sqlite_state import SQLiteStateStore
from ._sqlite_transaction import DeferredCommitConnection, TransactionLock
from ._ticket_queue import QueuedBackend

__all__ = ["SQLiteBackend", "SQLiteStateStore", "BACKEND"]  # the store lives in ._sqlite_state

logger = logging.getLogger(__name__)

# A member holding the lock longer than this is stuck (a lock holder does a few queries).
_LOCK_TIMEOUT_SECONDS = 10.0
# The file lock polls while another process holds it (flock has no timed wait); 50 ms
# (filelock's default) would leave slots unused.
_LOCK_POLL_SECONDS = 0.001

# The longest a member behind the front of the queue sleeps before asking again (its
# estimate of when its turn comes may be wrong: a member ahead gave up or died).
BEHIND_WAIT_MAX_SECONDS = 0.5

_PAUSE_TABLE = "cowork_llm_pause"
_QUEUE_TABLE = "cowork_llm_queue"
_LEASE_TABLE = "cowork_llm_leases"
# A member blocked by the shared concurrency cap asks again this often (no wake-ups
# between processes here: a release in another process is seen at the next ask).
_LEASE_POLL_SECONDS = 0.02

T = TypeVar("T")


def _table_name(key: str) -> str:
    """A table name safe to paste into pyrate's SQL (it quotes, never binds, it)."""
    readable = re.sub(r"[^A-Za-z0-9_]", "_", key)[:40]
    # "starts_us": the log counts in microseconds (earlier versions: milliseconds, in
    # tables named cowork_llm_requests_*; a new name keeps their rows from being misread).
    return f"cowork_llm_starts_us_{readable}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class SQLiteBackend(QueuedBackend):
    """Request rates, token budget and pause in one SQLite file shared by processes.

    Raises LimiterBackendError when the file cannot be opened, created or locked (it
    names the file).
    """

    def __init__(self, config: RateLimitConfig) -> None:
        assert config.path is not None  # RateLimitConfig requires it for sqlite
        self.path = os.path.abspath(os.path.expanduser(config.path))
        self.description = f"sqlite file {self.path}"
        self._store_errors = (sqlite3.Error, OSError)  # a lock timeout is a TimeoutError
        # The file lock, with one transaction per hold (see _sqlite_transaction).
        self._lock = TransactionLock(file_lock(self.path + ".lock", timeout=_LOCK_TIMEOUT_SECONDS,
                                               poll_interval=_LOCK_POLL_SECONDS), lambda: self._conn)
        self._conn: Optional[sqlite3.Connection] = None
        self._file_id: Optional[Tuple[int, int]] = None  # (st_dev, st_ino) of the file opened
        try:
            requests, tokens = self._connect(config)
        except self._store_errors as error:
            if self._conn is not None:
                self._conn.close()
            raise LimiterBackendError(
                f"cannot use {self.description} (llm.rate_limit.path) for the shared rate "
                f"limit: {error}. Point path at a writable SQLite file (it is created if "
                "missing; every process sharing the limit must use the same file)") from error
        super().__init__(config, requests, tokens)
        self._lead = reservation_lead_seconds(config)
        self.leases = LeaseKeeper(self._renew, self.description)
        self._pending_lease: Dict[int, str] = {}  # thread -> the lease its admission took
        # This backend's members that were given a ticket (under the guard, see _leave_queue).
        self._ticketed: Set[str] = set()

    def _connect(self, config: RateLimitConfig) -> Any:
        """Open (or create) the file under the file lock and remember which file it is."""
        with self._lock:
            if not os.path.exists(self.path):
                # A -wal/-shm pair left by a deleted file belongs to that file: SQLite
                # would try to use it for the new one (measured: callers wedged 10-20 s).
                for leftover in (self.path + "-wal", self.path + "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
            self._conn = sqlite3.connect(self.path, isolation_level="DEFERRED",
                                         check_same_thread=False, timeout=_LOCK_TIMEOUT_SECONDS,
                                         factory=DeferredCommitConnection)
            made = self._open(config, self._conn)
            stat = os.stat(self.path)
            self._file_id = (stat.st_dev, stat.st_ino)
            return made

    def _open(self, config: RateLimitConfig, conn: sqlite3.Connection) -> Any:
        table = _table_name(config.key)
        rates, tpm = request_log_rates(config), token_rates(config)
        with self._lock:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(Queries.CREATE_BUCKET_TABLE.format(table=table))
            conn.execute(Queries.CREATE_INDEX_ON_TIMESTAMP.format(
                index_name=f"idx_{table}_ts", table_name=table))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_PAUSE_TABLE} "
                         "(key TEXT PRIMARY KEY, until_ms INTEGER NOT NULL)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_TOKEN_TABLE} "
                         "(key TEXT PRIMARY KEY, state TEXT NOT NULL)")
            # AUTOINCREMENT: a ticket number is never reused, so a newcomer is always last.
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_QUEUE_TABLE} "
                         "(ticket INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, "
                         "member TEXT NOT NULL UNIQUE, alive_until_ms INTEGER NOT NULL)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS idx_{_QUEUE_TABLE}_key_ticket "
                         f"ON {_QUEUE_TABLE} (key, ticket)")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_LEASE_TABLE} (lease TEXT PRIMARY KEY, "
                         "key TEXT NOT NULL, expires_ms REAL NOT NULL)")
            conn.execute(SQLITE_CREATE)  # what was learned from the provider's headers
            conn.commit()
        # The bucket takes the file lock itself in put() (reentrant in our thread); we
        # never hand it to pyrate's Limiter, whose non-blocking path breaks with filelock 4.
        requests = SQLiteBucket(rates, conn, table, lock=self._lock) if rates else None
        store = SQLiteStateStore(conn, self._lock, config.key)
        tokens = StateBucket(tpm, algorithm=TokenBucket(), store=store, clock=WallClock()) if tpm else None
        return requests, tokens

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        with self._lock:
            try:
                self._check_same_file()
                yield
            except BaseException:
                # Never keep the WAL write lock past a failure (measured: every other
                # process got "database is locked" until this one made another call).
                self._rollback()
                raise

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.rollback()
            except sqlite3.Error as error:  # the original error is the one to report
                logger.debug("rollback in %s failed: %s", self.description, error)

    def _drop_ticket_after_failure(self, member: str) -> None:
        # The file lock is ours (a lock timeout never gets here): leaving costs no wait.
        # Committed now: the hold ends with the error, which rolls back what is pending.
        self._rollback()
        try:
            self._leave_queue([member])
            conn = self._connection()
            if isinstance(conn, DeferredCommitConnection):
                conn.commit_now()
        except self._store_errors as error:
            logger.debug("leaving the queue of %s after a failure: %s", self.description, error)

    def _check_same_file(self) -> None:
        """With the file lock held: reopen when the file was deleted or replaced since we
        opened it. Processes still on the old file and processes on the new one would
        each keep a limit of their own (measured: 64 gaps of ~25 ms at a 0.5 s interval)."""
        if self._conn is None:
            return
        try:
            stat = os.stat(self.path)
            same = (stat.st_dev, stat.st_ino) == self._file_id
        except FileNotFoundError:
            same = False
        if same:
            return
        logger.warning("%s was deleted or replaced while in use; reopening it, and waiting "
                       "one full interval before the next start (what was recorded in the "
                       "old file is lost)", self.description)
        old, self._conn = self._conn, None
        with contextlib.suppress(sqlite3.Error):
            old.close()
        self._requests, self._tokens = self._connect(self.config)
        self._write_pause(lost_state_pause_seconds(self.config))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LimiterBackendError(f"{self.description}: the rate-limiter backend is closed")
        return self._conn

    def _read_pause(self) -> float:
        row = self._connection().execute(
            f"SELECT until_ms FROM {_PAUSE_TABLE} WHERE key = ?", (self._name,)).fetchone()
        return 0.0 if row is None else max(0.0, row[0] / 1000 - time.time())

    def _write_pause(self, seconds: float) -> None:
        conn = self._connection()
        until_ms = int((time.time() + seconds) * 1000) + 1
        conn.execute(
            f"INSERT INTO {_PAUSE_TABLE} (key, until_ms) VALUES (?, ?) ON CONFLICT(key) "
            "DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)", (self._name, until_ms))
        conn.commit()

    def _take_turn(self, member: str, alive_ms: int) -> bool:
        # A member takes a ticket only when someone else is in front: one that finds the
        # queue empty (the usual case: heads asking at their reserved instants) goes
        # straight to the buckets, and _keep_alive gives it a ticket if it must wait.
        # That is three statements fewer per admission than queueing every ask.
        conn = self._connection()
        now_ms = int(time.time() * 1000)
        front = self._front(conn)
        if front is not None and front[0] != member and front[1] < now_ms:
            conn.execute(f"DELETE FROM {_QUEUE_TABLE} WHERE key = ? AND alive_until_ms < ?",
                         (self._name, now_ms))  # dead members' tickets
            front = self._front(conn)
        if front is None:
            return True
        self._keep_alive(member, alive_ms)  # a ticket at the back, or a fresh heartbeat
        return front[0] == member

    def _first_free(self, now: int, weight: int) -> int:
        # Per rate, the start that must leave its window before `weight` more fit: one
        # indexed read, where a put refused first (a count, a peek, the wait) took three
        # statements and pyrate's bookkeeping. The put that follows checks it.
        assert self._requests is not None
        table = self._requests.table  # type: ignore[attr-defined]
        conn = self._connection()
        free = now
        for rate in self._rates:
            if rate.limit < weight:
                continue  # check_fits refused it before; the bucket answers
            row = conn.execute(f"SELECT item_timestamp FROM '{table}' ORDER BY item_timestamp DESC "
                               "LIMIT 1 OFFSET ?", (rate.limit - weight,)).fetchone()
            if row is not None:  # pyrate's own bound: the window includes its start
                free = max(free, int(row[0]) + rate.interval + 1)
        return free

    def _front(self, conn: sqlite3.Connection) -> Optional[Tuple[str, int]]:
        row = conn.execute(f"SELECT member, alive_until_ms FROM {_QUEUE_TABLE} WHERE key = ? "
                           "ORDER BY ticket LIMIT 1", (self._name,)).fetchone()
        return None if row is None else (row[0], row[1])

    # --- the shared concurrency cap ---------------------------------------------------

    def _cap_wait(self) -> float:
        if self.config.max_concurrent_scope != "shared":
            return 0.0
        conn = self._connection()
        now_ms = time.time() * 1000
        conn.execute(f"DELETE FROM {_LEASE_TABLE} WHERE key = ? AND expires_ms <= ?", (self._name, now_ms))
        held, first = conn.execute(f"SELECT COUNT(*), MIN(expires_ms) FROM {_LEASE_TABLE} WHERE key = ?",
                                   (self._name,)).fetchone()
        if held < self.config.max_concurrent:
            return 0.0
        conn.commit()
        return min(_LEASE_POLL_SECONDS, max(0.001, (first - now_ms) / 1000))

    def _on_admitted(self) -> None:
        if self.config.max_concurrent_scope != "shared":
            return
        lease = LeaseKeeper.new_id()
        conn = self._connection()
        conn.execute(f"INSERT INTO {_LEASE_TABLE} (lease, key, expires_ms) VALUES (?, ?, ?)",
                     (lease, self._name, time.time() * 1000 + self.leases.lease_seconds * 1000))
        conn.commit()
        self._pending_lease[threading.get_ident()] = lease
        self.leases.hold(lease)

    def take_lease(self) -> Optional[str]:
        return self._pending_lease.pop(threading.get_ident(), None)

    def release_lease(self, lease: str) -> None:
        if not self.leases.drop(lease):
            return
        try:
            with self._guard():
                conn = self._connection()
                conn.execute(f"DELETE FROM {_LEASE_TABLE} WHERE lease = ?", (lease,))
                conn.commit()
        except (LimiterBackendError, sqlite3.Error, OSError) as error:
            logger.warning("could not give back a concurrency lease in %s: %s; it expires by "
                           "itself within %.0f s", self.description, error, self.leases.lease_seconds)

    def _renew(self, leases: List[str]) -> None:
        with self._guard():
            conn = self._connection()
            until = time.time() * 1000 + self.leases.lease_seconds * 1000
            conn.executemany(f"UPDATE {_LEASE_TABLE} SET expires_ms = ? WHERE lease = ?",
                             [(until, lease) for lease in leases])
            conn.commit()

    def _behind_wait(self, member: str) -> float:
        # Sleep until this member's turn can come, instead of polling: the front starts
        # when the pause and the bucket allow, each member ahead one spacing later.
        conn = self._connection()
        ahead = conn.execute(
            f"SELECT COUNT(*) FROM {_QUEUE_TABLE} WHERE key = ? AND ticket < "
            f"(SELECT ticket FROM {_QUEUE_TABLE} WHERE member = ?)", (self._name, member)).fetchone()[0]
        units = REQUEST_LOG_UNITS_PER_SECOND
        spacing = min((rate.interval / rate.limit for rate in self._rates), default=0.0) / units
        next_free = 0.0
        if self._requests is not None:
            table = self._requests.table  # type: ignore[attr-defined]
            last = conn.execute(f"SELECT MAX(item_timestamp) FROM '{table}'").fetchone()[0]
            if last is not None:  # may lie ahead: a reservation
                next_free = max(0.0, last / units + spacing - self._request_clock() / units)
        # Plus the lead: the member just ahead reserves its slot the lead before it frees,
        # and asking at that same moment would only contend with it for the file lock.
        wait = max(self._read_pause(), next_free) + max(0, ahead - 1) * spacing + self._lead
        floor = max(0.001, min(self.queue_poll_seconds, spacing))
        return min(max(wait, floor), BEHIND_WAIT_MAX_SECONDS)

    def _keep_alive(self, member: str, alive_ms: int) -> None:
        # An upsert: the ticket (a new one at the back) keeps its number when it exists.
        conn = self._connection()
        conn.execute(f"INSERT INTO {_QUEUE_TABLE} (key, member, alive_until_ms) VALUES (?, ?, ?) "
                     "ON CONFLICT(member) DO UPDATE SET alive_until_ms = excluded.alive_until_ms",
                     (self._name, member, int(time.time() * 1000) + alive_ms))
        conn.commit()
        self._ticketed.add(member)

    def _leave_queue(self, members: List[str]) -> None:
        # Only members this backend gave a ticket (an admission straight from an empty
        # queue has none: no statement for it). The set may name tickets gone since.
        members = [member for member in members if member in self._ticketed]
        if not members:
            return
        conn = self._connection()
        conn.executemany(f"DELETE FROM {_QUEUE_TABLE} WHERE member = ?", [(m,) for m in members])
        conn.commit()
        self._ticketed.difference_update(members)

    shares_provider_view = True

    @contextlib.contextmanager
    def provider_view_guard(self) -> Iterator[None]:
        """The file lock: the view's look, the buckets and the view's charge in one
        hold and one transaction, atomic across processes (the inner acquisitions are
        reentrant). Raises LimiterBackendError when the lock or the commit fails."""
        try:
            with self._lock:
                yield
        except self._store_errors as error:
            raise self._backend_error(error) from error

    def update_provider_view(self, update: Callable[[Dict[str, Any], float], T], *,
                             read_only: bool = False) -> T:
        """The provider view in a row of the file, under the file lock."""
        try:
            with self._lock:
                return sqlite_update(self._connection(), self._name, update, read_only=read_only)
        except self._store_errors as error:
            raise self._backend_error(error) from error

    def _backend_error(self, error: BaseException) -> LimiterBackendError:
        return LimiterBackendError(
            f"the shared rate limit in {self.description} (llm.rate_limit.path) failed: "
            f"{type(error).__name__}: {error}. Check that the file and its directory are "
            "writable and not on a network file system")

    def close(self) -> None:
        self.leases.close()
        self._withdraw_all()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                with self._lock:
                    conn.close()
            except self._store_errors as error:
                logger.debug("closing %s: %s", self.description, error)
            if self._requests is not None:
                self._requests.conn = None  # type: ignore[attr-defined]
        getattr(self._lock.lock, "close", lambda: None)()  # the lock file's descriptor


#: What :func:`cowork_llm.rate_limiter.backends.build_backend` builds for ``backend = "sqlite"``.
BACKEND = SQLiteBackend
