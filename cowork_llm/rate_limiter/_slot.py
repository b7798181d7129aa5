"""What a caller of the :class:`~cowork_llm.rate_limiter.RateLimiter` holds: a
:class:`Slot` (permission for one request to be in flight) and the context manager
:meth:`RateLimiter.slot` returns."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Mapping, Optional

from ._provider_view import Demand

if TYPE_CHECKING:  # the gate imports this module
    from ._gate import RateLimiter

__all__ = ["Slot"]


@dataclass
class Slot:
    """Permission for one request to be in flight. Give it back with :meth:`release`
    (or use :meth:`RateLimiter.slot`); releasing twice is harmless."""

    ticket: int  #: arrival order at the gate (0, 1, 2, ...)
    waited_seconds: float  #: from asking to being admitted: queue, pause and interval
    admitted_at: float  #: time.monotonic() of the start recorded (acquire returns no earlier)
    _limiter: "RateLimiter" = field(repr=False)
    _released: bool = field(default=False, repr=False)
    _fork_epoch: int = field(default=0, repr=False)  # the limiter's, when it was handed out
    queue_position: int = 0  #: callers already queued (waiting, not in flight) on arrival
    _lease: Optional[str] = field(default=None, repr=False)  # max_concurrent_scope = "shared"
    #: what the request takes from the provider's learned budgets (None: not adaptive)
    demand: Optional[Mapping[str, float]] = field(default=None, repr=False)
    #: the provider view's cumulative charges right after this admission
    marks: Dict[str, float] = field(default_factory=dict, repr=False)
    admitted_wall: float = field(default=0.0, repr=False)  #: time.time() at admission

    def release(self) -> None:
        """Let the next request in. Idempotent and thread-safe."""
        self._limiter._release(self)

    @property
    def released(self) -> bool:
        return self._released


class _SlotContext:
    """What :meth:`RateLimiter.slot` returns: acquires on entry, releases on exit (a
    small class: cheaper per request than a generator-based context manager)."""

    __slots__ = ("_limiter", "_weight", "_tokens", "_demand", "_slot")

    def __init__(self, limiter: "RateLimiter", weight: int, tokens: int,
                 demand: Optional[Demand]) -> None:
        self._limiter, self._weight, self._tokens = limiter, weight, tokens
        self._demand = demand
        self._slot: Optional[Slot] = None

    def __enter__(self) -> Slot:
        self._slot = self._limiter.acquire(self._weight, self._tokens, demand=self._demand)
        return self._slot

    def __exit__(self, *exc_info: object) -> None:
        if self._slot is not None:
            self._slot.release()
