"""When the head of a :class:`~cowork_llm.rate_limiter.RateLimiter`'s queue asks its
backend, how far ahead it may reserve a start, and when an admitted thread starts: the
timing half of the gate (``_gate.py`` keeps the queue, the slots and the waiting).

- **Reservations.** An ask may reserve a start up to the horizon ahead (100 ms, see
  :func:`~._rates.reservation_horizon_seconds`); after a wait answer the head asks
  again the lead (5 ms) before the slot. The store records the start at the instant
  the slot frees, so a sleep's overshoot is never added to the interval.
- **The first ask.** Processes taking turns put a process's next slot one or more
  turns after its previous start. Asking too soon is told to wait (one more round trip
  to a shared store), so the next head first asks about half the horizon before its
  own slot, as learned from the previous admissions (:meth:`AskTiming.learn`).
- **Starting.** An admitted thread sleeps until its recorded start, and until
  ``min_interval_seconds`` after this process's previous start (:meth:`start_in_turn`).
"""

import threading
import time
from typing import Optional

from ..config._sections import RateLimitConfig
from ._rates import padded_window_ms, reservation_horizon_seconds, reservation_lead_seconds

__all__ = ["AskTiming"]


class AskTiming:
    """One limiter's timing state. :meth:`learn` and :meth:`admitted` run under the
    gate's lock; :meth:`start_in_turn` takes a lock of its own."""

    def __init__(self, config: RateLimitConfig) -> None:
        #: The head asks again this long before a slot it was told to wait for.
        self.lead = reservation_lead_seconds(config)
        #: An ask may reserve a start this far ahead.
        self.horizon = reservation_horizon_seconds(config)
        #: The process's own starts are kept this far apart (0: no interval, no timing).
        self.spacing = config.min_interval_seconds
        self._padded_interval = padded_window_ms(self.spacing * 1000) / 1000
        self.reset()

    def reset(self) -> None:
        """Start afresh (a forked child: its starts are spaced by its backend)."""
        #: The next head asks no sooner than this (time.monotonic()).
        self.next_first_ask = 0.0
        self._ask_after = self._first_ask_delay()
        self._start_lock = threading.Lock()
        self._last_start = -float("inf")  # time.monotonic() of the latest start

    def horizon_until(self, deadline: Optional[float]) -> float:
        """How far ahead the next ask may reserve: the horizon, never past ``deadline``
        (a reserved start would outlive the caller's acquire timeout)."""
        if deadline is None:
            return self.horizon
        return min(self.horizon, max(0.0, deadline - time.monotonic()))

    def admitted(self, start: float, distance: float) -> None:
        """An admission whose recorded start is ``start`` (time.monotonic()) and lay
        ``distance`` ahead of its head's first ask: learn from it, and set when the
        next head first asks."""
        if self.spacing <= 0:
            return
        self.learn(distance)
        self.next_first_ask = start + self._ask_after

    def _first_ask_delay(self) -> float:
        """The first estimate of how long after a start the next head asks: this
        process alone, the horizon before its next slot."""
        return max(0.0, self._padded_interval - self.horizon)

    def learn(self, distance: float) -> None:
        """``distance``: how far ahead of a head's first ask its slot lay (0: free at
        once), whatever came between (a wait, a place in the shared queue, a pause).
        With 8 processes at 50 ms a process's next slot lies 400 ms on, past the
        horizon, where an ask is only told to wait; so the next head first asks
        later, aiming at a slot half the horizon ahead: reserved by that ask, with
        room for the other processes' timing. It moves by at most the horizon per
        admission, a whole step down when the slot was free at once (the ask may have
        come late), so a pause's long wait delays one ask by at most the horizon."""
        error = distance - 0.5 * self.horizon if distance > 0 else -self.horizon
        self._ask_after = max(0.0, self._ask_after + min(error, self.horizon))

    def start_in_turn(self, start_at: float) -> None:
        """Once admitted, without the gate's lock: sleep until the start the backend
        recorded (a reservation lies up to the horizon ahead), and until
        ``min_interval_seconds`` after this process's previous start. The recorded
        starts are spaced exactly; a thread that wakes late (the machine was busy)
        would otherwise start just before the next one, on time, and the server would
        see the two close together. The lateness is absorbed by the next start only:
        the recorded grid stays."""
        while True:
            now = time.monotonic()
            with self._start_lock:
                ready = max(start_at, self._last_start + self.spacing)
                if now >= ready:
                    self._last_start = now
                    return
            time.sleep(ready - now)
