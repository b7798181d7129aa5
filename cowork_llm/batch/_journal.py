"""The batch output file as a journal: one JSON line per finished item, never lost.

Each line is written with one buffered write and flushed at once, so a crash can only
cut the *last* line short. :func:`recover_journal` finds such a torn line, copies its bytes
to ``OUTPUT.torn`` and truncates the file to its last complete line, so nothing complete
is lost and the cut item is simply run again (its id cannot appear twice).

One run at a time: :func:`lock_output` holds an exclusive lock on ``OUTPUT.lock`` for the
whole run, so a second run on the same file (a command started twice, a cron overlap)
fails at once instead of duplicating ids and interleaving lines.
"""

import json
import logging
import os
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Optional, Set

import filelock

from ..errors import BatchOutputError, OutputLockedError
from ._input import id_key

__all__ = [
    "JournalState",
    "JournalWriter",
    "lock_output",
    "check_output_path",
    "recover_journal",
    "drop_error_lines",
]

logger = logging.getLogger(__name__)


@contextmanager
def lock_output(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (the file ``path.lock``) for the block.

    An OS lock (flock on POSIX, msvcrt on Windows, through filelock) on a file beside the
    output, not on the output itself: resuming replaces the output atomically
    (:func:`drop_error_lines`), which would lose a lock held on the old file. The OS drops
    the lock when its process dies, even by kill -9, so no stale lock can block a rerun.
    The small ``.lock`` file is left in place (removing it would race a run taking it).

    Raises:
        OutputLockedError: another run holds the lock (at once, without waiting).
        OSError: the lock file cannot be created (e.g. the directory does not exist).
    """
    lock_path = path.with_name(path.name + ".lock")
    lock = filelock.FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OutputLockedError(
            f"{path} is being written by another batch right now (it holds {lock_path}); "
            "wait for that run to finish, or write to another file"
        ) from None
    try:
        yield
    finally:
        lock.release()


def check_output_path(path: Path) -> None:
    """Refuse an output that is not a regular file (a directory, /dev/null, a FIFO):
    resuming must read back what was written, and a FIFO would block forever.

    Raises:
        BatchOutputError: ``path`` exists and is not a regular file.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # reported by the first real read or write, with its own message
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device or pipe)"
        raise BatchOutputError(f"{path} is {what}; the output must be a file the batch can "
                               "read back to resume: give a file name")


@dataclass
class JournalState:
    """What an existing output file already holds, by id key."""

    done: Set[str] = field(default_factory=set)
    failed: Set[str] = field(default_factory=set)  # errored and not since succeeded
    repaired_bytes: int = 0
    torn_copy: Optional[Path] = None


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path``'s directory durable (no-op where
    directories cannot be opened, as on Windows)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _result_key(line: bytes, number: int, path: Path) -> "tuple[str, bool]":
    """The id key of one output line and whether it is a success.
    Raises BatchOutputError when the line is not a batch result."""
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict) or ("output" in obj) == ("error" in obj):
            raise ValueError("no 'output' or 'error'")
        return id_key(obj.get("id")), "output" in obj
    except RecursionError:
        raise BatchOutputError(f"{path} line {number} is not a batch result (nested too deeply); "
                               "is -o the right file?") from None
    except ValueError as exc:
        raise BatchOutputError(
            f"{path} line {number} is not a batch result ({exc}); is -o the right file? "
            "Move it away or fix that line, then rerun"
        ) from None


def _repair_torn_tail(path: Path, data: bytes) -> "tuple[bytes, int, Optional[Path]]":
    """Cut an unterminated last line off ``path`` after saving it to ``path.torn``."""
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    if not tail:
        return data, 0, None
    copy = path.with_name(path.name + ".torn")
    with open(copy, "ab") as saved:  # saved first: a crash here loses nothing
        saved.write(tail + b"\n")
        saved.flush()
        os.fsync(saved.fileno())
    with open(path, "r+b") as output:
        output.truncate(cut)
        output.flush()
        os.fsync(output.fileno())
    logger.warning(
        "%s ended in a half-written line (%d bytes, the process was stopped mid-write); "
        "removed it and saved it to %s. Its item will run again.", path, len(tail), copy,
    )
    return data[:cut], len(tail), copy


def recover_journal(path: Path) -> JournalState:
    """Repair a torn last line and report which ids are done or failed.

    Raises:
        BatchOutputError: a complete line is not a batch result (the file is left as is).
        OSError: the file cannot be read or repaired.
    """
    state = JournalState()
    if not path.exists():
        return state
    data = path.read_bytes()
    data, state.repaired_bytes, state.torn_copy = _repair_torn_tail(path, data)
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        key, succeeded = _result_key(line, number, path)
        if succeeded:
            state.done.add(key)
            state.failed.discard(key)
        elif key not in state.done:
            state.failed.add(key)
    return state


def drop_error_lines(path: Path, keys: Collection[str]) -> int:
    """Rewrite ``path`` without the error lines of ``keys`` (about to be retried), so the
    finished file holds one line per id. Atomic: a crash leaves the old or the new file.
    Returns the number of lines dropped. Raises OSError."""
    wanted = set(keys)
    kept, dropped = [], 0
    for number, line in enumerate(path.read_bytes().split(b"\n")[:-1], start=1):
        if line.strip():
            key, succeeded = _result_key(line, number, path)
            if not succeeded and key in wanted:
                dropped += 1
                continue
        kept.append(line + b"\n")
    if dropped:
        temporary = path.with_name(path.name + ".rewrite")
        with open(temporary, "wb") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        _fsync_dir(path)
    return dropped


class JournalWriter:
    """Appends result lines from many threads; each line is written whole and flushed,
    and the file is fsync'd at most every ``fsync_interval_seconds`` and on close.
    Lines written after :meth:`close` (abandoned workers) are dropped, not written."""

    def __init__(
        self,
        path: Path,
        *,
        fsync_interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._file = open(path, "ab")
        self._lock = threading.Lock()
        self._interval = fsync_interval_seconds
        self._clock = clock
        self._last_sync = clock()
        self._closed = False
        self.fsyncs = 0
        if path.stat().st_size == 0:
            _fsync_dir(path)  # a new file's directory entry must survive a crash too

    def write(self, record: Mapping[str, Any]) -> bool:
        """Append one record as one line. Returns False (and writes nothing) once
        closed. Raises OSError (disk full, ...) and TypeError for a record JSON cannot hold."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._closed:
                return False
            self._file.write(line)
            self._file.flush()
            if self._clock() - self._last_sync >= self._interval:
                self._sync()
        return True

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._last_sync = self._clock()
        self.fsyncs += 1

    def close(self) -> None:
        """Flush, fsync and close. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._file.flush()
                self._sync()
            finally:
                self._file.close()

