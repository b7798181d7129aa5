"""The token bucket's state for the ``sqlite`` backend: one row of the limiter's file per
key, read-modified-written under the file lock (pyrate-limiter has no SQLite state store)."""

from typing import Any, List

from pyrate_limiter.abstracts.algorithm import StateAlgorithm
from pyrate_limiter.abstracts.rate import Rate
from pyrate_limiter.abstracts.store import StateStore
from pyrate_limiter.clocks import WallClock

__all__ = ["SQLiteStateStore", "TOKEN_TABLE"]

#: The table holding one state row per limiter key.
TOKEN_TABLE = "cowork_llm_token_state"
_TOKEN_TABLE = TOKEN_TABLE


class SQLiteStateStore(StateStore):
    """A ``StateAlgorithm``'s state (the token bucket's one number) in a row of the
    limiter's SQLite file, read-modified-written under the file lock."""

    is_async = False
    default_clock = WallClock()  # shared between processes: not a monotonic clock

    def __init__(self, conn: Any, lock: Any, key: str) -> None:
        self._conn = conn
        self._lock = lock
        self._key = key

    def _load(self, algorithm: StateAlgorithm, rates: List[Rate]) -> Any:
        row = self._conn.execute(f"SELECT state FROM {_TOKEN_TABLE} WHERE key = ?", (self._key,)).fetchone()
        values = row[0].split(",") if row and row[0] else []
        # Another member with other rates wrote a different shape: start afresh.
        return algorithm.decode(values) if len(values) == len(rates) else algorithm.initial(rates)

    def check(self, algorithm: StateAlgorithm, rates: List[Rate], now: int, weight: int) -> Any:
        with self._lock:
            new_state, decision = algorithm.step(rates, self._load(algorithm, rates), now, weight)
            if decision.allowed:
                self._conn.execute(
                    f"INSERT OR REPLACE INTO {_TOKEN_TABLE} (key, state) VALUES (?, ?)",
                    (self._key, ",".join(str(int(v)) for v in new_state)))
                self._conn.commit()
            return decision

    def read(self, algorithm: StateAlgorithm, rates: List[Rate]) -> Any:
        with self._lock:
            return self._load(algorithm, rates)

    def reset(self) -> None:
        with self._lock:
            self._conn.execute(f"DELETE FROM {_TOKEN_TABLE} WHERE key = ?", (self._key,))
            self._conn.commit()
