"""The client users share between threads: a provider behind the limiter and retries.

- :mod:`._factory`: :func:`create_llm_client`, configuration in, client out.
- :mod:`._rate_limited`: :class:`RateLimitedLlm`, every attempt through a limiter slot.
- :mod:`._attempts`: its call path: the retry loop, one attempt inside one slot, the
  weight an attempt asks for and the pause a 429 asks of the limiter.
- :mod:`._observed`: what its observers are told about a call before it starts.
- :mod:`._stream`: a streamed call holding its slot until the stream ends.
- :mod:`._embed`: texts embedded in batches, each batch one call.
- :mod:`._accounting`: what each call adds to the usage totals and the log.
- :mod:`._fallback`: :class:`FallbackLlm`, the next model when one finally fails.
"""

from typing import TYPE_CHECKING, Any

from ._accounting import CallRecord
from ._factory import create_llm_client
from ._rate_limited import RateLimitedLlm

if TYPE_CHECKING:
    from ._fallback import FallbackLlm


def __getattr__(name: str) -> Any:
    """FallbackLlm, loaded on first use: a program without fallback models never pays
    for importing it (see BENCHMARKS.md, start-up). Raises AttributeError otherwise."""
    if name == "FallbackLlm":
        from ._fallback import FallbackLlm

        return FallbackLlm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CallRecord",
    "create_llm_client",
    "FallbackLlm",
    "RateLimitedLlm",
]
