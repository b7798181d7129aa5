"""What a :class:`~cowork_llm.config.RateLimitConfig` asks for, in pyrate-limiter's terms:
the rates of the request bucket and of the token bucket, and what one request weighs
against ``tokens_per_minute``. The same numbers for every backend
(:mod:`.backends`).
"""

import json
import logging
import math
from typing import Any, List, Mapping, Optional, Sequence

from pyrate_limiter import Rate

from ..config._sections import RateLimitConfig

__all__ = [
    "request_rates",
    "admission_rates",
    "request_log_rates",
    "REQUEST_LOG_UNITS_PER_SECOND",
    "reservation_lead_seconds",
    "reservation_horizon_seconds",
    "token_rates",
    "estimate_request_tokens",
    "estimate_embedding_tokens",
    "DEFAULT_COMPLETION_TOKENS",
    "CHARS_PER_TOKEN",
    "IMAGE_TOKENS",
    "LOW_DETAIL_IMAGE_TOKENS",
    "ARRIVAL_MARGIN_MAX_MS",
    "ARRIVAL_MARGIN_FRACTION",
    "lost_state_pause_seconds",
    "padded_window_ms",
]

logger = logging.getLogger(__name__)

_MINUTE_MS = 60_000

# Every interval is padded by min(20 ms, 1 %) before it reaches a bucket. The gate admits
# exactly, but a request reaches the server a few milliseconds after its admission, and
# that delay varies (7-11 ms measured on a busy 2-core machine): two starts admitted
# exactly 2 s apart can arrive 1.99 s apart. Users rely on the gap *at the server*. With
# the default 2 s interval the pad is 20 ms: gaps stay above 2.0 s, utilisation 99 %.
ARRIVAL_MARGIN_MAX_MS = 20
ARRIVAL_MARGIN_FRACTION = 0.01

#: Tokens a request is assumed to produce when neither the call nor ``llm.model``
#: sets ``max_tokens`` (the same as Anthropic's default; set max_tokens to be exact).
DEFAULT_COMPLETION_TOKENS = 1024
#: The prompt estimate: characters of every message's text / 4, rounded up.
CHARS_PER_TOKEN = 4
#: What one image weighs: OpenAI's price of a 1024x1024 image at high detail, 85 base
#: tokens + 170 per 512-pixel tile x 4 tiles (https://platform.openai.com/docs/guides/images-vision,
#: "Calculating costs"); the size is not read from the image. Anthropic's ~(w*h)/750 gives
#: about 1,400 for the same image.
IMAGE_TOKENS = 765
#: A ``detail: "low"`` image: OpenAI's flat 85 tokens.
LOW_DETAIL_IMAGE_TOKENS = 85


def _padded_ms(interval_ms: int) -> int:
    return math.ceil(padded_window_ms(interval_ms))


def padded_window_ms(interval_ms: float) -> float:
    """``interval_ms`` plus the arrival margin, min(20 ms, 1 %), unrounded (for a store
    that counts in fractions of a millisecond)."""
    return interval_ms + min(ARRIVAL_MARGIN_MAX_MS, interval_ms * ARRIVAL_MARGIN_FRACTION)


def _rates_for(interval_ms: int, minute_ms: int, rpm: Optional[int], interval_text: Any) -> List[Rate]:
    rates: List[Rate] = []
    if interval_ms > 0:
        rates.append(Rate(1, interval_ms))
    if rpm is not None:
        if interval_ms >= minute_ms or (interval_ms > 0 and rpm * interval_ms > minute_ms):
            # Starts spaced > interval_ms apart fit at most floor(minute / interval_ms) + 1
            # in any minute, which is <= rpm here: the extra rate could never refuse.
            logger.debug("requests_per_minute=%d is implied by min_interval_seconds=%s",
                         rpm, interval_text)
        elif rpm == 1:
            rates = [Rate(1, minute_ms)]  # one a minute is stricter than any shorter interval
        else:
            rates.append(Rate(rpm, minute_ms))
    return rates


def request_rates(config: RateLimitConfig) -> List[Rate]:
    """The configured request rates, tight to loose as pyrate requires (no margin).

    ``min_interval_seconds`` becomes ``Rate(1, interval)``, rounded up to whole
    milliseconds so it never allows more than asked. ``requests_per_minute`` becomes
    ``Rate(n, 1 minute)`` unless the interval already implies it (pyrate rejects a
    looser rate after a tighter one); ``requests_per_minute = 1`` alone implies any
    interval under a minute. An empty list means "no rate": only the gate applies.
    """
    interval_ms = math.ceil(config.min_interval_seconds * 1000)
    return _rates_for(interval_ms, _MINUTE_MS, config.requests_per_minute, config.min_interval_seconds)


def admission_rates(config: RateLimitConfig) -> List[Rate]:
    """:func:`request_rates` with every window padded by min(20 ms, 1 %), so the
    spacing holds where it counts: at the server. What the backends enforce."""
    interval_ms = math.ceil(config.min_interval_seconds * 1000)
    padded = _padded_ms(interval_ms) if interval_ms > 0 else 0
    return _rates_for(padded, _padded_ms(_MINUTE_MS), config.requests_per_minute,
                      config.min_interval_seconds)


#: The unit of the request logs of the ``memory`` and ``sqlite`` backends: microseconds.
#: pyrate-limiter's log compares whole units and counts its window inclusively; in
#: milliseconds a 10 ms interval padded to 10.1 ms became 11, plus 1 for the inclusive
#: bound: starts 12 ms apart, 83 % of 100 requests/s at most.
REQUEST_LOG_UNITS_PER_SECOND = 1_000_000


def _whole_micros(seconds: float) -> int:
    # round() first: 0.01 * 1e6 is 10000.000000000002, which ceil would make 10001.
    return math.ceil(round(seconds * 1_000_000, 3))


def request_log_rates(config: RateLimitConfig) -> List[Rate]:
    """:func:`admission_rates` in microseconds (:data:`REQUEST_LOG_UNITS_PER_SECOND`), the
    unit of the request logs kept with pyrate-limiter's buckets: the same padded windows,
    rounded up to the microsecond instead of the millisecond."""
    interval_us = _whole_micros(config.min_interval_seconds)
    padded = math.ceil(padded_window_ms(interval_us / 1000) * 1000) if interval_us > 0 else 0
    minute_us = math.ceil(padded_window_ms(_MINUTE_MS) * 1000)
    return _rates_for(padded, minute_us, config.requests_per_minute, config.min_interval_seconds)


# How far ahead of its slot the head of the queue asks (see reservation_lead_seconds).
_RESERVATION_LEAD_MAX_SECONDS = 0.005
_RESERVATION_LEAD_FRACTION = 0.5


def reservation_lead_seconds(config: RateLimitConfig) -> float:
    """How long before the request rates free a slot the head of the queue asks for it:
    min(5 ms, half of ``min_interval_seconds``); 0 without an interval.

    The store then records the start *at the instant the slot frees* (a reservation) and
    the head starts then. Asking at the instant instead would record the start when the
    ask arrives: the sleep's overshoot and the store's round trip (together 0.5-2 ms on a
    busy machine) are added to every interval, 10-20 % of 100 requests/s. With the
    reservation, starts stay one interval apart on the store's clock whatever the
    overshoot, as long as it is shorter than the lead.
    """
    interval = config.min_interval_seconds
    return min(_RESERVATION_LEAD_MAX_SECONDS, interval * _RESERVATION_LEAD_FRACTION) if interval > 0 else 0.0


#: How far ahead a start may be reserved (see reservation_horizon_seconds).
RESERVATION_HORIZON_SECONDS = 0.1


def reservation_horizon_seconds(config: RateLimitConfig) -> float:
    """How far ahead of its start a head may reserve it: 100 ms, at least the lead.

    Processes sharing a store take turns: by the time a head asks, the next slot is
    usually another process's, and its own lies one or more intervals later. Reserving
    only within the lead, it was told to wait and asked again: two round trips to the
    store per admission, where one does (measured: BENCHMARKS.md, "Limiter at scale").
    A reserved start counts as started: a pause set after it (a 429's Retry-After) does
    not hold it, as it does not hold requests already sent. 100 ms bounds that (a
    request usually takes longer than that to be answered anyway), and covers up to 10
    processes taking turns at 100 requests/s.
    """
    return max(RESERVATION_HORIZON_SECONDS, reservation_lead_seconds(config))


def token_rates(config: RateLimitConfig) -> List[Rate]:
    """The token bucket's rate: ``tokens_per_minute`` tokens, refilling over a (padded)
    minute, all of them available at once. Empty when no token limit is set."""
    tpm = config.tokens_per_minute
    return [] if tpm is None else [Rate(tpm, _padded_ms(_MINUTE_MS))]


def estimate_request_tokens(messages: Sequence[Mapping[str, Any]], max_tokens: Optional[int],
                            tools: Optional[Sequence[Mapping[str, Any]]] = None) -> int:
    """What a request weighs against ``tokens_per_minute``: the larger of the prompt
    estimate and ``max_tokens`` (:data:`DEFAULT_COMPLETION_TOKENS` when None).

    OpenAI's rule: "your rate limit is calculated as the maximum of max_tokens and the
    estimated number of tokens based on the character count of your request"
    (https://platform.openai.com/docs/guides/rate-limits/error-mitigation, "Reduce the
    max_tokens to match the size of your completions"). Adding the two, as earlier
    versions did, over-reserves.

    The prompt estimate is the characters of every text (string content and text
    parts) / :data:`CHARS_PER_TOKEN`, rounded up, plus :data:`IMAGE_TOKENS` per image
    (:data:`LOW_DETAIL_IMAGE_TOKENS` for ``detail: "low"``): an image's base64 data is
    not text and is not counted by its length. Tool calls' arguments and the tools'
    definitions (their JSON) are text of the request too.
    """
    chars = 0
    images = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "image_url":
                    image = part.get("image_url")
                    low = isinstance(image, Mapping) and image.get("detail") == "low"
                    images += LOW_DETAIL_IMAGE_TOKENS if low else IMAGE_TOKENS
                elif isinstance(part.get("text"), str):
                    chars += len(part["text"])
        for call in message.get("tool_calls") or ():
            arguments = call.get("function", {}).get("arguments") if isinstance(call, Mapping) else None
            chars += len(arguments) if isinstance(arguments, str) else 0
    if tools:
        chars += len(json.dumps(list(tools), default=str))
    prompt = math.ceil(chars / CHARS_PER_TOKEN) + images
    completion = DEFAULT_COMPLETION_TOKENS if max_tokens is None else max_tokens
    return max(prompt, completion)


def estimate_embedding_tokens(texts: Sequence[str]) -> int:
    """What one embeddings request weighs against ``tokens_per_minute``: the texts'
    characters / 4, rounded up (an embedding produces no completion tokens)."""
    return math.ceil(sum(len(text) for text in texts) / CHARS_PER_TOKEN)


def lost_state_pause_seconds(config: RateLimitConfig) -> float:
    """How long a group holds its starts after its shared record was lost (Redis flushed
    or restarted, the SQLite file deleted): the longest window of its request rates, so
    no start of the lost record can be closer than a rate allows to the next one."""
    longest = max((rate.interval for rate in request_log_rates(config)), default=0)
    return longest / REQUEST_LOG_UNITS_PER_SECOND
