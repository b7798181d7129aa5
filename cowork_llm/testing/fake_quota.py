"""A provider's quota for :class:`~cowork_llm.testing.FakeLlmServer`: requests and tokens
per minute (and Anthropic's separate input/output tokens per minute) as token buckets
refilling continuously, the way Anthropic documents its limits
(https://docs.anthropic.com/en/api/rate-limits), with the rate-limit headers of either
family on every answer and a 429 with ``retry-after`` when a request does not fit::

    from cowork_llm.testing import FakeLlmServer, Quota

    with FakeLlmServer(quota=Quota(requests_per_minute=120, tokens_per_minute=40_000)) as server:
        ...
        assert server.quota.refused == 0

A request costs 1 request, its prompt tokens plus its answer's tokens, the prompt as
input tokens and the answer as output tokens (four characters a token, as the fake
counts usage). It is admitted only when every limited dimension has room for its cost;
a refused request costs nothing. The headers describe each bucket *after* the request:
``limit``, ``remaining`` (whole units, rounded down; Anthropic's token counts rounded to
the nearest thousand, as the real API does, when ``round_tokens``) and ``reset`` (when
the bucket is full again: a Go-style duration for ``openai``, an RFC 3339 instant for
``anthropic``).
"""

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Dict, List, Mapping, Optional, Tuple

__all__ = ["Quota", "QuotaBuckets", "HEADER_FAMILIES"]

#: ``"auto"``: the family of the API asked (``/v1/messages`` -> anthropic).
HEADER_FAMILIES = ("auto", "openai", "anthropic")

_OPENAI_NAMES = {"requests": "requests", "tokens": "tokens"}
_ANTHROPIC_NAMES = {"requests": "requests", "tokens": "tokens",
                    "input_tokens": "input-tokens", "output_tokens": "output-tokens"}


@dataclass(frozen=True)
class Quota:
    """Per-minute limits (None: not limited) and the header family to send.

    Raises ValueError for a limit below 1 or an unknown ``headers`` family.
    """

    requests_per_minute: Optional[int] = None
    tokens_per_minute: Optional[int] = None
    input_tokens_per_minute: Optional[int] = None
    output_tokens_per_minute: Optional[int] = None
    headers: str = "auto"
    round_tokens: bool = True  #: Anthropic's remaining token counts to the nearest thousand

    def __post_init__(self) -> None:
        for name, value in self.limits().items():
            if value < 1:
                raise ValueError(f"Quota.{name.replace('tokens', 'tokens_per_minute')} must be at least 1")
        if self.headers not in HEADER_FAMILIES:
            raise ValueError(f"Quota.headers must be one of {', '.join(HEADER_FAMILIES)}")

    def limits(self) -> Dict[str, int]:
        """The limited dimensions and their per-minute limits."""
        values = {"requests": self.requests_per_minute, "tokens": self.tokens_per_minute,
                  "input_tokens": self.input_tokens_per_minute,
                  "output_tokens": self.output_tokens_per_minute}
        return {name: value for name, value in values.items() if value is not None}


def go_duration(seconds: float) -> str:
    """``seconds`` as OpenAI prints durations: ``12ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def rfc3339(when: float) -> str:
    """``when`` (POSIX time) as an RFC 3339 instant with milliseconds, in UTC."""
    moment = datetime.fromtimestamp(when, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class QuotaBuckets:
    """The running buckets of one server. Thread-safe.

    ``refused`` counts the 429s sent; ``admitted`` the requests that fit; ``refusals``
    holds the monotonic times of the 429s; ``spent`` what the admitted requests took
    from each dimension.
    """

    def __init__(self, quota: Quota, clock: Optional[Callable[[], float]] = None) -> None:
        self.quota = quota
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._limits = quota.limits()
        now = self._clock()
        self._levels = {name: float(limit) for name, limit in self._limits.items()}
        self._at = now
        self.admitted = 0
        self.refused = 0
        self.refusals: List[float] = []
        self.spent: Dict[str, float] = {name: 0.0 for name in self._limits}

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        for name, limit in self._limits.items():
            self._levels[name] = min(float(limit), self._levels[name] + elapsed * limit / 60.0)
        self._at = now

    def levels(self) -> Dict[str, float]:
        """Each bucket's level now."""
        with self._lock:
            self._refill(self._clock())
            return dict(self._levels)

    def take(self, cost: Mapping[str, float], family: str) -> Tuple[bool, Optional[float], Dict[str, str]]:
        """Spend ``cost`` if every limited bucket has room. Returns (admitted, seconds
        until it would fit when refused, the rate-limit headers to send)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            short = [(cost.get(name, 0.0) - level) / (self._limits[name] / 60.0)
                     for name, level in self._levels.items() if cost.get(name, 0.0) > level]
            if short:
                self.refused += 1
                self.refusals.append(now)
                return False, max(short), self._headers(family)
            for name in self._levels:
                self._levels[name] -= cost.get(name, 0.0)
                self.spent[name] += cost.get(name, 0.0)
            self.admitted += 1
            return True, None, self._headers(family)

    def _headers(self, family: str) -> Dict[str, str]:
        headers: Dict[str, str] = {}
        wall = time.time()
        names = _ANTHROPIC_NAMES if family == "anthropic" else _OPENAI_NAMES
        for name, limit in self._limits.items():
            if name not in names:
                continue  # the OpenAI family has no separate input/output budgets
            level = self._levels[name]
            to_full = max(0.0, (limit - level) / (limit / 60.0))
            remaining = max(0, math.floor(level))
            if family == "anthropic":
                if name != "requests" and self.quota.round_tokens:
                    remaining = int(round(remaining, -3))
                prefix = f"anthropic-ratelimit-{names[name]}-"
                headers.update({prefix + "limit": str(limit), prefix + "remaining": str(remaining),
                                prefix + "reset": rfc3339(wall + to_full)})
            else:
                headers.update({f"x-ratelimit-limit-{name}": str(limit),
                                f"x-ratelimit-remaining-{name}": str(remaining),
                                f"x-ratelimit-reset-{name}": go_duration(to_full)})
        return headers
