"""Where each backend keeps the provider view (:mod:`cowork_llm.rate_limiter._provider_view`):
one JSON document per limiter key, read-modified-written atomically.

- ``memory``: a dict in the process, under a lock.
- ``sqlite``: a row of ``cowork_llm_provider_view`` in the limiter's file, under the
  same file lock as the buckets.
- ``redis``: the key ``<the backend's key prefix>provider_view`` (next to its pause key,
  so it shares that key's hash tag and slot on a Cluster), updated optimistically: read,
  compute, write with a compare-and-set script, run again when another member wrote in
  between. The model stays in Python, one implementation for every backend, instead of
  a second one in Lua. Its clock is Redis's ``TIME``, read with the state in one script,
  so members on skewed hosts share one timeline (the hosts' clocks only where a managed
  Redis refuses TIME in scripts, as the backend's buckets do).

Every update is one function of the state, so a member's own accounting (its charge at
admission, its settlement) and what its response reported are applied together: no
update is lost between members.
"""

import json
import logging
import sqlite3
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from ...errors import LimiterBackendError

__all__ = ["LocalViewStore", "sqlite_update", "redis_update", "redis_view_scripts", "SQLITE_CREATE",
           "REDIS_VIEW_TTL_MS"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_TABLE = "cowork_llm_provider_view"
# A view nobody updated for a day is forgotten by Redis (the model would have refilled
# to full long before; only the limits would remain, and they are learned again at once).
REDIS_VIEW_TTL_MS = 24 * 3600 * 1000
# WATCH conflicts happen when members update at the same moment; each retry is one more
# round trip. Past this many, the store is too contended to be useful: say so.
_REDIS_ATTEMPTS = 50


class LocalViewStore:
    """The process-local view: a dict behind a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: Dict[str, Any] = {}

    def update(self, fn: Callable[[Dict[str, Any], float], T]) -> T:
        with self._lock:
            return fn(self._state, time.time())


def _encode(state: Dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"), sort_keys=True)


def _decode(text: Any) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not isinstance(state, dict):
        logger.debug("provider view unreadable; starting afresh")
        return {}
    return state


#: Run by the sqlite backend with its other CREATE statements.
SQLITE_CREATE = f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, state TEXT NOT NULL)"


def sqlite_update(conn: sqlite3.Connection, key: str, fn: Callable[[Dict[str, Any], float], T], *,
                  read_only: bool = False) -> T:
    """``fn`` on the stored state, written back when it changed. The caller holds the
    file lock. Raises sqlite3.Error."""
    row = conn.execute(f"SELECT state FROM {_TABLE} WHERE key = ?", (key,)).fetchone()
    before = row[0] if row else ""
    state = _decode(before)
    result = fn(state, time.time())
    if read_only:
        conn.commit()  # ends the read transaction, so other processes' writes are seen next time
        return result
    after = _encode(state)
    if after != before and row is not None:
        conn.execute(f"UPDATE {_TABLE} SET state = ? WHERE key = ?", (after, key))  # cheaper than a REPLACE
    elif after != before and state:
        conn.execute(f"INSERT INTO {_TABLE} (key, state) VALUES (?, ?)", (key, after))
    conn.commit()
    return result


# Compare-and-set: write ARGV[2] only if the key still holds ARGV[1] ('' = absent). One
# key per script, so it runs on a Redis Cluster node as on a single Redis (WATCH/MULTI
# does not work through redis-py's cluster client).
_REDIS_CAS = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


# The state and Redis's clock in one round trip, on the key's node.
_REDIS_READ = """
local now = redis.call('TIME')
return {redis.call('GET', KEYS[1]) or '', now[1], now[2]}
"""


# Each client's registered scripts: EVALSHA sends the script's hash, not its text, and
# Redis does not hash the text again on every call.
_SCRIPTS: "weakref.WeakKeyDictionary[Any, Tuple[Any, Any]]" = weakref.WeakKeyDictionary()
_SCRIPTS_LOCK = threading.Lock()


def redis_view_scripts(client: Any) -> Tuple[Any, Any]:
    """(read, compare-and-set) registered on ``client``: redis-py Scripts, called as
    ``script(keys=..., args=...)``."""
    return client.register_script(_REDIS_READ), client.register_script(_REDIS_CAS)


def _scripts(client: Any) -> Tuple[Any, Any]:
    """(read, compare-and-set) registered on ``client``, once per client."""
    with _SCRIPTS_LOCK:
        scripts = _SCRIPTS.get(client)
        if scripts is None:
            scripts = _SCRIPTS[client] = redis_view_scripts(client)
        return scripts


def _read(client: Any, read: Any, key: str, redis_clock: bool) -> Tuple[str, float]:
    if redis_clock:
        raw, seconds, micros = read(keys=[key])
        now = int(seconds) + int(micros) / 1e6
    else:
        raw, now = client.get(key), time.time()
    return (raw.decode() if isinstance(raw, bytes) else (raw or "")), now


def redis_update(client: Any, key: str, fn: Callable[[Dict[str, Any], float], T], *,
                 read_only: bool = False, redis_clock: bool = True,
                 first: Optional[Tuple[str, float]] = None,
                 scripts: Optional[Tuple[Any, Any]] = None) -> T:
    """``fn`` on the stored state, written back with a compare-and-set script and run
    again on the newer state when another member wrote in between (a read-only ``fn``:
    one GET). ``first``: (the state's text, now) read a moment ago, used instead of the
    first read; ``scripts``: (read, compare-and-set) callables to use instead of
    :func:`redis_view_scripts` on ``client``. Raises redis.RedisError, or
    LimiterBackendError when every attempt conflicted."""
    read, cas = scripts if scripts is not None else _scripts(client)
    for _ in range(_REDIS_ATTEMPTS):
        before, now = first if first is not None else _read(client, read, key, redis_clock)
        first = None
        state = _decode(before)
        result = fn(state, now)
        if read_only:
            return result
        after = _encode(state)
        if after == before or not state:
            return result
        if cas(keys=[key], args=[before, after, REDIS_VIEW_TTL_MS]):
            return result
    raise LimiterBackendError(f"the provider view at {key!r} was updated by other members "
                              f"{_REDIS_ATTEMPTS} times in a row; Redis is overloaded")
