"""The fault matrix: every fault FakeLlmServer can inject, sent through the whole stack
(create_llm_client -> RateLimitedLlm -> retry -> OpenAI provider -> HTTP), against what
must happen: retried or not, the final outcome, the attempts the server saw, and the time
waited.

Waits are measured twice: what the retry policy announced ("retrying in 1.00s", its
WARNING line) and the start-to-start gap between attempts at the server. The fake config
uses short backoff waits (0.01 s initial, 0.1 s cap), so only Retry-After makes a case slow.
"""

import email.utils
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple, Type

import pytest

from cowork_llm import create_llm_client
from cowork_llm.errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    LlmApiError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)
from cowork_llm.testing import FakeLlmServer

from ._helpers import recorded_waits

CHAT = FakeLlmServer.CHAT_PATH
BACKOFF = (0.0, 0.15)  # the fake config's exponential backoff: 0.01 s start, 0.1 s cap (+ jitter)
# A retry never reaches the server before its wait is over: a gap shorter than the
# announced wait minus this allowance (clock reads, scheduling) is a bug.
EARLY_SLACK = 0.02


@dataclass(frozen=True)
class Case:
    """One row: inject a fault, call once, compare."""

    name: str
    inject: Callable[[FakeLlmServer], Any]
    outcome: Optional[Type[LlmApiError]]  # None: the call succeeds (after retrying)
    attempts: int
    wait: Tuple[float, float] = (0.0, 0.0)  # bounds for each announced wait
    overrides: Dict[str, Any] = field(default_factory=dict)

    @property
    def retried(self) -> bool:
        return self.attempts > 1


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def _status(status: int, **options: Any) -> Callable[[FakeLlmServer], Any]:
    return lambda s: s.fail_next(status, **options)


# One fault, then a healthy server.
ONCE = [
    #    name                        inject                                           outcome  attempts  wait
    Case("500",                      _status(500),                                    None, 2, BACKOFF),
    Case("502",                      _status(502),                                    None, 2, BACKOFF),
    Case("503",                      _status(503),                                    None, 2, BACKOFF),
    Case("504",                      _status(504),                                    None, 2, BACKOFF),
    Case("529 overloaded",           _status(529),                                    None, 2, BACKOFF),
    Case("429 no Retry-After",       _status(429),                                    None, 2, BACKOFF),
    Case("429 Retry-After: 1",       _status(429, retry_after=1),                     None, 2, (1.0, 1.0)),
    Case("429 Retry-After HTTP date", lambda s: s.fail_next(429, retry_after=_http_date(2)),
         None, 2, (0.9, 2.05)),
    Case("429 retry-after-ms: 250",  _status(429, retry_after_ms=250),                None, 2, (0.25, 0.25)),
    Case("429 Retry-After > max",    _status(429, retry_after=1000),                  RateLimitError, 1),
    Case("429 insufficient_quota",   lambda s: s.quota_exceeded_next(),               QuotaExceededError, 1),
    Case("dropped connection",       lambda s: s.drop_next(),                         None, 2, BACKOFF),
    Case("read timeout",             lambda s: s.delay_next(2.0),                     None, 2, BACKOFF,
         {"timeout_seconds": 0.25}),
    Case("malformed JSON",       lambda s: s.malformed_next(),                    InvalidResponseError, 1),
    Case("200 without choices",  lambda s: s.empty_choices_next(),            InvalidResponseError, 1),
    Case("400",                      _status(400),                                    BadRequestError, 1),
    Case("401",                      _status(401),                                    AuthenticationError, 1),
    Case("403",                      _status(403),                                    AuthenticationError, 1),
    Case("404",                      _status(404),                                    NotFoundError, 1),
    Case("422",                      _status(422),                                    BadRequestError, 1),
]

# The same retryable faults, but they never stop: max_attempts (3) ends it, with the last
# attempt's error class and ``attempts`` set on it.
ALWAYS = [
    Case("500 x3",            _status(500, times=9),                 ServerError, 3, BACKOFF),
    Case("502 x3",            _status(502, times=9),                 ServerError, 3, BACKOFF),
    Case("503 x3",            _status(503, times=9),                 ServerError, 3, BACKOFF),
    Case("504 x3",            _status(504, times=9),                 ServerError, 3, BACKOFF),
    Case("529 x3",            _status(529, times=9),                 ServerError, 3, BACKOFF),
    Case("429 x3",            _status(429, times=9, retry_after_ms=20), RateLimitError, 3, (0.02, 0.02)),
    Case("dropped x3",        lambda s: s.drop_next(times=9),        ApiConnectionError, 3, BACKOFF),
    Case("read timeout x3",   lambda s: s.delay_next(2.0, times=9),  ApiTimeoutError, 3, BACKOFF,
         {"timeout_seconds": 0.15}),
]


def _run(server: FakeLlmServer, case: Case, caplog: pytest.LogCaptureFixture,
         **extra: Any) -> Tuple[Any, Optional[LlmApiError]]:
    caplog.set_level(logging.WARNING, logger="cowork_llm")
    llm = create_llm_client(server.config(**case.overrides, **extra))
    case.inject(server)
    try:
        return llm.generate_content(f"case {case.name}"), None
    except LlmApiError as error:
        return None, error
    finally:
        llm.close()


def _check_waits(server: FakeLlmServer, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    waits = recorded_waits(caplog.records)
    assert len(waits) == case.attempts - 1, f"{case.name}: announced waits {waits}"
    low, high = case.wait
    for wait in waits:
        assert low - 0.01 <= wait <= high + 0.01, f"{case.name}: waited {wait} s, expected {case.wait}"
    # At the server: no retry started before its announced wait was over.
    requests = server.chat_requests
    for wait, earlier, later in zip(waits, requests, requests[1:], strict=False):
        gap = later.arrival_monotonic - earlier.arrival_monotonic
        assert gap >= wait - EARLY_SLACK, f"{case.name}: retry came {gap:.3f} s after, wait was {wait}"


@pytest.mark.parametrize("case", ONCE, ids=[c.name for c in ONCE])
def test_a_single_fault(server, caplog, case):
    answer, error = _run(server, case, caplog)

    assert len(server.chat_requests) == case.attempts, f"{case.name}: attempts at the server"
    if case.outcome is None:
        assert error is None, f"{case.name}: expected success after a retry, got {error!r}"
        assert answer == f"echo: case {case.name}"
    else:
        assert type(error) is case.outcome, f"{case.name}: got {error!r}"
        assert error.attempts == case.attempts
    _check_waits(server, case, caplog)


@pytest.mark.parametrize("case", ALWAYS, ids=[c.name for c in ALWAYS])
def test_a_fault_that_never_stops_ends_after_max_attempts(server, caplog, case):
    answer, error = _run(server, case, caplog, max_attempts=3)

    assert answer is None
    assert type(error) is case.outcome, f"{case.name}: got {error!r}"
    assert error.attempts == 3
    assert len(server.chat_requests) == 3
    _check_waits(server, case, caplog)


def test_retry_after_one_second_holds_the_retry_back_a_full_second_at_the_server(server, caplog):
    # The row above checks the announced wait; this one the wall clock, end to end.
    llm = create_llm_client(server.config())
    server.fail_next(429, retry_after=1)
    started = time.monotonic()
    assert llm.generate_content("patience") == "echo: patience"
    elapsed = time.monotonic() - started
    first, second = server.chat_requests
    assert second.arrival_monotonic - first.arrival_monotonic >= 1.0 - EARLY_SLACK
    assert elapsed >= 1.0 - EARLY_SLACK


def test_a_read_timeout_fails_in_about_timeout_seconds_not_the_servers_delay(server):
    llm = create_llm_client(server.config(timeout_seconds=0.2, max_attempts=1))
    server.delay_next(3.0)
    started = time.monotonic()
    with pytest.raises(ApiTimeoutError):
        llm.generate_content("slow")
    # One-sided and generous: the point is that it did not wait the server's 3 s.
    assert time.monotonic() - started < 2.0
