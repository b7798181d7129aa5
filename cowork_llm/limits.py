"""What a provider tells us about its rate limits, and what the limiter knows of them.

- :class:`LimitReport`: the rate-limit headers of one response, parsed
  (:mod:`cowork_llm.providers._ratelimit_headers` reads them), per dimension.
- :class:`LimitsSnapshot`: what :meth:`RateLimitedLlm.limits` returns: the configured
  limits and, per dimension, what was learned from the provider and when.

A leaf module (no imports from the package), so results, errors, providers and the
rate limiter can all use these types.
"""

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

__all__ = ["DIMENSIONS", "DimensionReport", "LimitReport", "LearnedLimit", "LimitsSnapshot"]

#: The dimensions a provider may limit, in the order they are shown.
#: ``input_tokens`` and ``output_tokens`` are Anthropic's separate budgets.
DIMENSIONS: Tuple[str, ...] = ("requests", "tokens", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class DimensionReport:
    """One dimension of one response's headers. ``limit`` is None when the provider
    sent only the remaining amount (Azure OpenAI sometimes does); ``reset_seconds`` is
    the time until the provider's bucket is full again (None when not sent)."""

    name: str
    remaining: float
    limit: Optional[float] = None
    reset_seconds: Optional[float] = None


@dataclass(frozen=True)
class LimitReport:
    """The rate-limit headers of one response: ``family`` is ``"openai"`` (the
    ``x-ratelimit-*`` headers, also sent by Groq, Together, Azure OpenAI) or
    ``"anthropic"`` (``anthropic-ratelimit-*``)."""

    family: str
    dimensions: Tuple[DimensionReport, ...]

    def get(self, name: str) -> Optional[DimensionReport]:
        """The report for dimension ``name``, or None."""
        return next((d for d in self.dimensions if d.name == name), None)


@dataclass(frozen=True)
class LearnedLimit:
    """What the limiter believes of one provider dimension now.

    ``limit`` is the provider's capacity (None when it never said), ``level`` the
    modelled remaining amount now (admitted requests already subtracted),
    ``refill_per_second`` how fast the model refills, ``learned_at`` the wall-clock
    time (``time.time()``) of the last report, ``limit_learned_at`` when the limit
    first took its current value.
    """

    name: str
    limit: Optional[float]
    level: float
    refill_per_second: float
    learned_at: float
    limit_learned_at: float


@dataclass(frozen=True)
class LimitsSnapshot:
    """A frozen copy of what the limiter knows: the configured limits (from
    ``[llm.rate_limit]``) and the learned ones (empty when the provider sends no
    rate-limit headers, or ``adaptive = false``)."""

    key: str
    adaptive: bool
    pace: str
    min_interval_seconds: float
    max_concurrent: int
    requests_per_minute: Optional[int]
    tokens_per_minute: Optional[int]
    learned: Mapping[str, LearnedLimit]

    def lines(self) -> Tuple[str, ...]:
        """Lines for people (``cowork-llm health`` prints them)."""
        rpm = self.requests_per_minute if self.requests_per_minute is not None else "not set"
        tpm = self.tokens_per_minute if self.tokens_per_minute is not None else "not set"
        out = [f"rate limit {self.key!r}: min_interval_seconds={self.min_interval_seconds:g}, "
               f"max_concurrent={self.max_concurrent}, requests_per_minute={rpm}, "
               f"tokens_per_minute={tpm}, adaptive={'on' if self.adaptive else 'off'} "
               f"(pace {self.pace})"]
        if not self.learned:
            out.append("  learned from the provider: nothing yet" if self.adaptive
                       else "  learned from the provider: off (adaptive = false)")
        for name in DIMENSIONS:
            learned = self.learned.get(name)
            if learned is None:
                continue
            limit = "unknown" if learned.limit is None else f"{learned.limit:g}"
            out.append(f"  learned {name}: limit {limit}, about {max(learned.level, 0):.0f} left, "
                       f"refilling {learned.refill_per_second * 60:.6g}/min")
        return tuple(out)

    def __str__(self) -> str:
        return "\n".join(self.lines())
