"""Retry-After against the client's limits, end to end (create_llm_client → FakeLlmServer):
a wait longer than ``max_retry_after_seconds`` fails at once, even when the total
timeout would leave room for it, so a script is never parked for minutes."""

import time

import pytest

from cowork_llm import create_llm_client
from cowork_llm.errors import RateLimitError, ServerError
from cowork_llm.testing import FakeLlmServer


@pytest.fixture
def server():
    with FakeLlmServer() as server:
        yield server


@pytest.mark.parametrize("status, error", [(429, RateLimitError), (503, ServerError)])
def test_a_retry_after_above_the_cap_fails_at_once_with_one_request(server, status, error):
    client = create_llm_client(server.config(max_attempts=5, max_retry_after_seconds=30,
                                             total_timeout_seconds=300))
    server.fail_next(status=status, retry_after=100)
    started = time.monotonic()
    with pytest.raises(error) as raised:
        client.generate_content("hello")
    assert time.monotonic() - started < 5.0  # not 100 s
    assert raised.value.retry_after == 100 and raised.value.attempts == 1
    assert len(server.chat_requests) == 1


def test_a_retry_after_within_the_cap_is_waited_for(server):
    client = create_llm_client(server.config(max_attempts=2, max_retry_after_seconds=0.5))
    server.fail_next(status=429, retry_after=0.3)
    assert client.generate_content("hello") == "echo: hello"
    first, second = sorted(r.arrival_monotonic for r in server.chat_requests)
    assert second - first >= 0.3
