"""The ``redis`` backend's hot path: its ask script, sent on a connection of its own.

redis-py's command path (taking a connection from the pool and giving it back, the
retry wrapper, the observability hooks, encoding each argument) cost 226 µs of CPU per
call of the ask script (9 keys, 18 arguments) on this machine; the same call encoded
here and sent on a connection kept for it, 120 µs. At 100 admissions a second that is
most of what the limiter costs its host (BENCHMARKS.md, "Limiter at scale").

Only for a plain Redis: a Redis Cluster client routes each call to the node that holds
its keys, so there the script is called the usual way.
"""

import os
import threading
from typing import Any, List, Optional, Sequence

__all__ = ["ScriptCall"]


def _bulk(value: Any) -> bytes:
    """One argument as a RESP bulk string, encoded as redis-py encodes it."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, float):
        data = repr(value).encode()
    else:
        data = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class ScriptCall:
    """``script(keys=..., args=...)``, as redis-py's registered Script is called; on a
    plain Redis through a connection of its own (one call at a time), else through
    ``script`` itself. Raises what redis-py raises (redis.RedisError and its kinds)."""

    def __init__(self, client: Any, script: Any) -> None:
        self._client = client
        self._script = script  # redis-py's Script: its sha, its text, and the cluster path
        self._own = hasattr(client, "connection_pool")  # RedisCluster has no single pool
        self._lock = threading.Lock()
        self._connection: Any = None
        self._pid = os.getpid()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        if not self._own:
            return self._script(keys=keys, args=args)
        from redis.exceptions import ConnectionError, NoScriptError

        with self._lock:
            reused = self._connection is not None and self._pid == os.getpid()
            try:
                return self._send(keys, args)
            except NoScriptError:  # the server lost its scripts (restarted, SCRIPT FLUSH)
                self._client.script_load(self._script.script)
                return self._send(keys, args)
            except ConnectionError:
                if not reused:
                    raise  # a new connection failed: Redis is down or unreachable
                # The server closed a connection kept idle (a restart, a timeout, CLIENT
                # KILL), so the command almost surely never ran: once more, on a new
                # connection. Had it run, the retry costs a slot or charges the view
                # twice: a loss, never an excess.
                return self._send(keys, args)

    def _send(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        from redis.exceptions import ResponseError

        connection = self._connect()
        parts: List[bytes] = [b"*%d\r\n" % (3 + len(keys) + len(args)), _bulk("EVALSHA"),
                              _bulk(self._script.sha), _bulk(len(keys))]
        parts.extend(_bulk(key) for key in keys)
        parts.extend(_bulk(arg) for arg in args)
        try:
            connection.send_packed_command([b"".join(parts)])
            return connection.read_response()
        except ResponseError:
            raise  # an answer: the connection is in step
        except BaseException:
            # A timeout, a dropped connection, an interrupt: an answer may still be on
            # its way, which the next call would read as its own. Start afresh.
            self._drop()
            raise

    def _connect(self) -> Any:
        if self._pid != os.getpid():  # after fork(): the parent's socket is not ours
            self._connection, self._pid = None, os.getpid()
        if self._connection is None:
            self._connection = self._client.connection_pool.make_connection()
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._pid == os.getpid():
                self._drop()
            else:
                self._connection = None

    @property
    def connection(self) -> Optional[Any]:
        """The connection kept for this script (None before the first call)."""
        return self._connection
