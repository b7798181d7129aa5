"""The client users share between threads: a provider behind the limiter and retries.

- :mod:`._factory`: :func:`create_llm_client`, configuration in, client out.
- :mod:`._rate_limited`: :class:`RateLimitedLlm`, every attempt through a limiter slot.
- :mod:`._stream`: a streamed call holding its slot until the stream ends.
- :mod:`._accounting`: what each call adds to the usage totals and the log.
- :mod:`._fallback`: :class:`FallbackLlm`, the next model when one finally fails.
"""

from ._accounting import CallRecord
from ._factory import create_llm_client
from ._fallback import FallbackLlm
from ._rate_limited import RateLimitedLlm

__all__ = ["CallRecord", "FallbackLlm", "RateLimitedLlm", "create_llm_client"]
