"""The limiter's model of the provider's own buckets, learned from rate-limit headers.

Per dimension (requests, tokens, input tokens, output tokens) the provider reports a
limit L, a remaining amount R and a reset (when its bucket is full again). The model is
a bucket: capacity L, level R, refilling at r units a second, corrected by every
response. Before a request is admitted, its demand (1 request, its estimated tokens) must
fit the modelled level of every dimension the provider reported; admission subtracts the
demand at once, so requests admitted and not yet answered are already accounted for.

The refill rate r: Anthropic documents per-minute token buckets that refill
continuously (https://docs.anthropic.com/en/api/rate-limits), so r = L / 60. The
OpenAI family's ``reset`` is "the time until the rate limit resets to its initial state"
and some servers count per day (Groq's requests): r = (L - R) / reset, never more than
L / 60 (no provider's window is shorter than a minute; Anthropic's remaining counts are
rounded to the nearest thousand, which would otherwise overstate the rate).

Correcting the model (measured, DEPENDENCIES.md "Learning a quota from rate-limit
headers"): responses arrive out of order, so a late response carries a stale, higher
remaining. A report is first brought to *now*: R was true when the request arrived at the provider,
some time between its admission and the response; since then the bucket lost whatever was
admitted after this request (the cumulative charge counter minus this request's mark) and
refilled at least r x (now - when the response came), which is all that is counted (counting
from the admission overstated the level by r x the admission-to-arrival delay, measured
~0.1 s on a busy machine).
The result may lower the modelled level, never raise it above what the model predicts
now. A changed limit (a tier upgrade) replaces the model outright.

Token settlement: the estimate is charged at admission; the real usage replaces it when
the answer arrives (the difference is refunded or charged).

The state is one JSON-able dict, read-modified-written atomically by the backend
(:meth:`~cowork_llm.rate_limiter.backends.LimiterBackend.update_provider_view`), so
every process sharing a backend obeys what any of them learned. Times are wall-clock
seconds from the store's clock: ``time.time()`` for memory and sqlite (the processes of
one machine share it), Redis's ``TIME`` for redis (hosts' clocks may disagree), passed to
every update as ``now``.
"""

import logging
import math
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar

from ..config._sections import RateLimitConfig
from ..limits import DIMENSIONS, LearnedLimit, LimitReport, LimitsSnapshot
from .backends.base import LimiterBackend

__all__ = ["ProviderView", "Demand", "Marks", "demand_for", "used_by"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Demand = Mapping[str, float]  #: what one request takes from each dimension
Marks = Dict[str, float]  #: the cumulative charge of each dimension right after admission

_MINUTE = 60.0
# A demand larger than a dimension's whole capacity could never fit: it waits for a full
# bucket instead of forever (the provider will answer 429 or accept; either way we learn).
# A wait with no refill known is capped so a waiter looks again.
_MAX_WAIT_SECONDS = 60.0
_ROUNDING_SLACK = 500.0


def demand_for(prompt_tokens: int, max_tokens: int) -> Dict[str, float]:
    """One request's demand: 1 request, prompt + max_tokens tokens (the provider's own
    estimate), the prompt as input and max_tokens as output tokens."""
    return {"requests": 1.0, "tokens": float(prompt_tokens + max_tokens),
            "input_tokens": float(prompt_tokens), "output_tokens": float(max_tokens)}


def used_by(usage: Any) -> Optional[Dict[str, float]]:
    """What an answer's :class:`~cowork_llm.results.Usage` really took from each token
    dimension; None without usage. Prompt tokens read from the provider's cache
    (``cached_prompt_tokens``, when reported) do not count toward Anthropic's input-token
    limit ("cache_read_input_tokens ... do not count towards ITPM",
    https://docs.anthropic.com/en/api/rate-limits); tokens written to it do."""
    if usage is None:
        return None
    prompt, completion = float(usage.prompt_tokens), float(usage.completion_tokens)
    cached = usage.cached_prompt_tokens or 0
    return {"tokens": prompt + completion, "input_tokens": max(0.0, prompt - cached),
            "output_tokens": completion}


def _level(dim: Mapping[str, Any], now: float) -> float:
    """The modelled level of a dimension at ``now``: refilled since it was last set,
    never above the capacity; held (no refill) until a refusal's reset, full after it."""
    hold = dim.get("hold_until", 0.0)
    if hold > dim["t"]:
        return dim["level"] if now < hold else dim["cap"]
    refill = dim["rate"] * max(0.0, now - dim["t"])
    return min(dim["cap"], dim["level"] + refill)


def _dimension_wait(dim: Mapping[str, Any], need: float, now: float, even: bool) -> float:
    need = min(need, dim["cap"])
    missing = need - _level(dim, now)
    wait = 0.0
    hold = dim.get("hold_until", 0.0)
    if missing > 1e-9 and dim["t"] < hold and now < hold:
        wait = hold - now  # full at the end of the hold
    elif missing > 1e-9:
        wait = missing / dim["rate"] if dim["rate"] > 0 else _MAX_WAIT_SECONDS
    if even:
        wait = max(wait, dim.get("next_even", 0.0) - now)
    return min(wait, _MAX_WAIT_SECONDS)


def _wait(state: Mapping[str, Any], demand: Demand, now: float, even: bool) -> float:
    dims = state.get("dims", {})
    return max((_dimension_wait(dims[name], need, now, even)
                for name, need in demand.items() if name in dims and need > 0), default=0.0)


def _charge(state: Dict[str, Any], demand: Demand, now: float, even: bool) -> Marks:
    dims, charged = state.setdefault("dims", {}), state.setdefault("charged", {})
    for name, need in demand.items():
        charged[name] = charged.get(name, 0.0) + need
        dim = dims.get(name)
        if dim is None:
            continue
        dim["level"], dim["t"] = _level(dim, now) - need, now
        if even and dim["rate"] > 0:
            dim["next_even"] = max(now, dim.get("next_even", 0.0)) + min(need, dim["cap"]) / dim["rate"]
    return {name: charged[name] for name in demand}


def _refill_rate(family: str, limit: float, remaining: float, reset: Optional[float],
                 previous: Optional[float]) -> float:
    per_minute = limit / _MINUTE
    if family == "anthropic":
        return per_minute
    if reset is not None and reset > 0 and remaining < limit:
        return min(per_minute, (limit - remaining) / reset)
    return previous if previous is not None else per_minute


def _apply(state: Dict[str, Any], report: LimitReport, reported_at: float, marks: Marks,
           now: float, refused: bool) -> List[Tuple[str, Optional[float], Optional[float]]]:
    """Correct the model with one response's report; the (dimension, old limit, new
    limit) of every limit that appeared or changed.

    A refusal (429) that reports a dimension empty proves the model wrong about it: that
    dimension then takes the strictest reading of the report, nothing until its reset
    (as a fixed window would), and full after it, as the provider promised. Only a
    report that shows room (or a new limit) ends that hold early."""
    dims, charged = state.setdefault("dims", {}), state.setdefault("charged", {})
    changes = []
    for rep in report.dimensions:
        old = dims.get(rep.name)
        old_limit = old["limit"] if old else None
        cap = rep.limit if rep.limit is not None else max(rep.remaining, old["cap"] if old else 0.0)
        if cap <= 0:
            continue
        rate = _refill_rate(report.family, cap, rep.remaining, rep.reset_seconds,
                            old["rate"] if old else None)
        after = charged.get(rep.name, 0.0) - marks.get(rep.name, charged.get(rep.name, 0.0))
        reported_now = min(cap, rep.remaining + rate * max(0.0, now - reported_at)) - max(0.0, after)
        limit_changed = old is None or (rep.limit is not None and rep.limit != old_limit)
        # Anthropic rounds remaining token counts to the nearest thousand: the truth is
        # within 500 of the report, so only a model more than that above it is wrong.
        slack = _ROUNDING_SLACK if report.family == "anthropic" and rep.name != "requests" else 0.0
        level = reported_now if limit_changed else min(_level(old, now), reported_now + slack)
        dim = dims[rep.name] = {
            "limit": rep.limit if rep.limit is not None else old_limit, "cap": cap,
            "level": level, "t": now, "rate": rate, "learned_at": now,
            "limit_at": now if limit_changed else old["limit_at"],
            "next_even": old.get("next_even", 0.0) if old else 0.0,
        }
        if refused and rep.remaining <= 0 and rep.reset_seconds:
            dim["level"], dim["hold_until"] = min(level, 0.0), now + rep.reset_seconds
        elif old and not limit_changed and old.get("hold_until", 0.0) > now and reported_now <= 0:
            # A late answer to a request admitted before the refusal that shows no room
            # either tells nothing new: the refusal's hold stands.
            dim["hold_until"] = old["hold_until"]
        if limit_changed and (old is None or dim["limit"] != old_limit):
            changes.append((rep.name, old_limit, dim["limit"]))
    return changes


def _settle(state: Dict[str, Any], demand: Demand, used: Mapping[str, float], now: float) -> None:
    dims = state.get("dims", {})
    for name, actual in used.items():
        dim = dims.get(name)
        if dim is None or name not in demand:
            continue
        dim["level"], dim["t"] = min(dim["cap"], _level(dim, now) + demand[name] - actual), now


class ProviderView:
    """What one limiter learned of the provider, kept in its backend. Thread-safe (the
    backend's update is atomic); every method raises LimiterBackendError when a shared
    store fails."""

    def __init__(self, config: RateLimitConfig, backend: LimiterBackend) -> None:
        self.config = config
        self.backend = backend
        self._even = config.pace == "even"
        # Whether the view held a learned limit when this process last looked. While it
        # did not, wait() skips its look (one store round trip per ask on sqlite and
        # redis): admit() checks again atomically, so a limit another member learned
        # meanwhile still holds (the configured slot of that ask is then lost, never an
        # excess), and from then on wait() looks again.
        self._limits_seen = False

    def wait(self, demand: Demand) -> float:
        """Seconds until ``demand`` fits every learned dimension (0.0: now). Reads only,
        and only when this process last saw a learned limit (see admit())."""
        if not self._limits_seen:
            return 0.0
        return float(self.backend.update_provider_view(
            self._seeing(lambda state, now: _wait(state, demand, now, self._even)), read_only=True))

    def admit(self, demand: Demand) -> Tuple[float, Marks]:
        """Charge ``demand`` if it fits now: ``(0.0, marks)``; otherwise ``(wait, {})``
        and nothing charged."""
        def update(state: Dict[str, Any], now: float) -> Tuple[float, Marks]:
            wait = _wait(state, demand, now, self._even)
            return (wait, {}) if wait > 0 else (0.0, _charge(state, demand, now, self._even))
        result: Tuple[float, Marks] = self.backend.update_provider_view(self._seeing(update))
        return result

    def _seeing(self, fn: Callable[[Dict[str, Any], float], T]) -> Callable[[Dict[str, Any], float], T]:
        """``fn``, noting whether the state it is given holds a learned limit."""
        def noting(state: Dict[str, Any], now: float) -> T:
            result = fn(state, now)
            self._limits_seen = bool(state.get("dims"))  # after: fn may have learned one
            return result
        return noting

    def observe(self, report: Optional[LimitReport], *, marks: Marks, demand: Demand,
                used: Optional[Mapping[str, float]], refused: bool = False,
                reported_age: float = 0.0) -> None:
        """One answer (or error): settle its tokens with ``used`` (the real usage, None
        when unknown: the estimate stands) and correct the model with ``report``, in
        one atomic update. ``refused``: the answer was a 429; ``reported_age``: seconds
        since its headers arrived (measured on this host's monotonic clock, so it means
        the same on the store's clock)."""
        if report is None and (not used or not self._limits_seen):
            # Nothing to correct, and no learned limit this process saw (so none its
            # admission charged): settling would refund what was never charged.
            return

        def update(state: Dict[str, Any], now: float) -> List[Tuple[str, Optional[float], Optional[float]]]:
            if used:
                _settle(state, demand, used, now)
            if report is None:
                return []
            return _apply(state, report, now - max(0.0, reported_age), marks, now, refused)
        for name, old, new in self.backend.update_provider_view(self._seeing(update)):
            if old is None:
                logger.info("rate limiter %r learned the provider's %s limit: %s", self.config.key,
                            name, _amount(new))
            else:
                logger.info("rate limiter %r: the provider's %s limit changed from %s to %s",
                            self.config.key, name, _amount(old), _amount(new))

    def learned(self) -> Dict[str, LearnedLimit]:
        """What is known now, per dimension."""
        def read(state: Dict[str, Any], now: float) -> Dict[str, LearnedLimit]:
            return {name: LearnedLimit(name, dim["limit"], _level(dim, now), dim["rate"],
                                       dim["learned_at"], dim["limit_at"])
                    for name, dim in state.get("dims", {}).items() if name in DIMENSIONS}
        learned: Dict[str, LearnedLimit] = self.backend.update_provider_view(read, read_only=True)
        return learned

    def snapshot(self) -> LimitsSnapshot:
        """Configured and learned limits, frozen."""
        c = self.config
        return LimitsSnapshot(c.key, c.adaptive, c.pace, c.min_interval_seconds, c.max_concurrent,
                              c.requests_per_minute, c.tokens_per_minute,
                              MappingProxyType(self.learned() if c.adaptive else {}))


def _amount(value: Optional[float]) -> str:
    if value is None:
        return "unknown"
    return f"{value:g}" if not math.isfinite(value) or value != int(value) else f"{int(value)}"
