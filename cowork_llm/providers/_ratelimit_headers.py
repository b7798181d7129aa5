"""The rate-limit headers providers send with every response, parsed into a
:class:`~cowork_llm.limits.LimitReport`; and ``x-should-retry``.

OpenAI (https://platform.openai.com/docs/guides/rate-limits, "Rate limits in
headers"): ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``; ``reset`` is "the
time until the rate limit resets to its initial state" as a Go-style duration: ``1s``,
``6m0s``, ``12ms``, ``2m59.56s`` (the docs' own samples, and ``12ms``/``9ms`` as the API
sends them). Groq, Together and other OpenAI-compatible servers copy these names (Groq
counts ``-requests`` per day and ``-tokens`` per minute: the refill rate is therefore
derived from ``reset``, not assumed per minute). Azure OpenAI sends integer seconds and
sometimes only the ``remaining`` headers.

Anthropic (https://docs.anthropic.com/en/api/rate-limits, "Response headers"):
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``,
``reset`` an RFC 3339 instant at which the limit is fully replenished; limits are token
buckets that refill continuously; remaining token counts are rounded to the nearest
thousand.

``x-should-retry: true|false``: the official SDKs obey it before anything else
(openai-python ``_base_client.py`` ``_should_retry``: "If the server explicitly says
whether or not to retry, obey").

A header that cannot be read is ignored with one DEBUG line per response, never an
exception: the limits are advice, the answer is what matters.
"""

import logging
import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Mapping, Optional

from ..limits import DIMENSIONS, DimensionReport, LimitReport

__all__ = ["parse_rate_limit_headers", "parse_duration", "parse_rfc3339", "should_retry_header"]

logger = logging.getLogger(__name__)

_OPENAI = "x-ratelimit-"
_ANTHROPIC = "anthropic-ratelimit-"
_OPENAI_DIMENSIONS = {"requests": "requests", "tokens": "tokens"}
_ANTHROPIC_DIMENSIONS = {"requests": "requests", "tokens": "tokens",
                         "input-tokens": "input_tokens", "output-tokens": "output_tokens"}

# Go's time.Duration text (what OpenAI's servers print): one or more <number><unit>,
# units h, m, s, ms, us/µs, ns; e.g. "6m0s", "2m59.56s", "12ms". A bare number is
# seconds (Azure OpenAI).
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                 "μs": 1e-6, "ns": 1e-9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# RFC 3339 date-time: 2025-01-15T14:24:00Z, with optional fraction and numeric offset.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))")
# Nobody's window is longer than a day plus change; a larger reset is nonsense, ignored.
_MAX_RESET_SECONDS = 7 * 24 * 3600.0
# Header values are short; a longer one is not parsed at all (bounded work per response).
_MAX_VALUE_CHARS = 64


def parse_duration(text: str) -> Optional[float]:
    """Seconds in a Go-style duration (``6m0s``, ``12ms``, ``2m59.56s``) or a bare
    number of seconds (``20``, ``0.5``); None when ``text`` is neither. Never raises."""
    text = text.strip()
    if not text or len(text) > _MAX_VALUE_CHARS:
        return None
    if _BARE_NUMBER.fullmatch(text):
        return float(text)
    total, position = 0.0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            return None
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    if position != len(text) or position == 0 or not math.isfinite(total):
        return None
    return total


def parse_rfc3339(text: str) -> Optional[float]:
    """The POSIX time of an RFC 3339 date-time (``2025-01-15T14:24:00Z``); None when
    ``text`` is not one. Never raises."""
    match = _RFC3339.fullmatch(text.strip()) if len(text) <= _MAX_VALUE_CHARS else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction = float(match.group(7)) if match.group(7) else 0.0
    offset = timedelta(0)
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if match.group(9) == "-":
            offset = -offset
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
    except ValueError:  # month 13, hour 25, offset of a day or more
        return None
    return moment.timestamp() + fraction


def _number(text: str) -> Optional[float]:
    text = text.strip()
    if len(text) > _MAX_VALUE_CHARS or not _BARE_NUMBER.fullmatch(text):
        return None
    return float(text)


def _dimension(name: str, values: Dict[str, str], family: str, now: float,
               problems: List[str]) -> Optional[DimensionReport]:
    """One dimension from its ``limit``/``remaining``/``reset`` values (any missing)."""
    limit = remaining = reset = None
    if "limit" in values:
        limit = _number(values["limit"])
        if limit is None:
            problems.append(f"{name} limit {values['limit'][:_MAX_VALUE_CHARS]!r}")
    if "remaining" in values:
        remaining = _number(values["remaining"])
        if remaining is None:
            problems.append(f"{name} remaining {values['remaining'][:_MAX_VALUE_CHARS]!r}")
    if "reset" in values:
        raw = values["reset"]
        if family == "anthropic":
            instant = parse_rfc3339(raw)
            reset = None if instant is None else max(0.0, instant - now)
        else:
            reset = parse_duration(raw)
        if reset is not None and reset > _MAX_RESET_SECONDS:
            reset = None
        if reset is None:
            problems.append(f"{name} reset {raw[:_MAX_VALUE_CHARS]!r}")
    if remaining is None:
        return None  # without the remaining amount there is nothing to model
    if limit is not None and limit <= 0:
        problems.append(f"{name} limit {limit:g}")
        limit = None
    if limit is not None and remaining > limit:
        remaining = limit  # Anthropic rounds remaining to the nearest thousand
    return DimensionReport(name, remaining, limit, reset)


def parse_rate_limit_headers(headers: Mapping[str, str], *, now: Optional[float] = None
                             ) -> Optional[LimitReport]:
    """The rate-limit headers of a response as a :class:`LimitReport`; None when it
    sent none (llama.cpp, vLLM, Ollama). Anthropic's headers win when both families
    are present. Unreadable values are left out (one DEBUG line). Never raises."""
    now = time.time() if now is None else now
    found: Dict[str, Dict[str, Dict[str, str]]] = {"anthropic": {}, "openai": {}}
    for raw_name, value in headers.items():
        name = raw_name.lower()
        if name.startswith(_ANTHROPIC):
            family, rest, names = "anthropic", name[len(_ANTHROPIC):], _ANTHROPIC_DIMENSIONS
            dimension, _, field = rest.rpartition("-")
        elif name.startswith(_OPENAI):
            family, rest, names = "openai", name[len(_OPENAI):], _OPENAI_DIMENSIONS
            field, _, dimension = rest.partition("-")
        else:
            continue
        if dimension in names and field in ("limit", "remaining", "reset"):
            found[family].setdefault(names[dimension], {})[field] = str(value)
    family = "anthropic" if found["anthropic"] else "openai"
    if not found[family]:
        return None
    problems: List[str] = []
    dimensions: List[DimensionReport] = []
    for name, values in found[family].items():
        report = _dimension(name, values, family, now, problems)
        if report is not None:
            dimensions.append(report)
        elif "remaining" not in values:
            problems.append(f"{name} without a remaining count")
    if problems:
        logger.debug("ignored unreadable rate-limit headers (%s family): %s",
                     family, "; ".join(problems))
    if not dimensions:
        return None
    dimensions.sort(key=lambda d: DIMENSIONS.index(d.name))
    return LimitReport(family, tuple(dimensions))


def should_retry_header(headers: Mapping[str, str]) -> Optional[bool]:
    """``x-should-retry``: True for ``true``, False for ``false``, None when absent or
    anything else (as the official SDKs read it). Never raises."""
    for name, value in headers.items():
        if name.lower() == "x-should-retry":
            text = str(value).strip().lower()
            return True if text == "true" else False if text == "false" else None
    return None

