"""tokens_per_minute: the weight estimate, the token bucket (constant memory, shared by
the sqlite and redis members), and a request heavier than the whole budget failing at
once. Waits are read from the backend (what it would make a caller wait), not slept."""

import json
import threading
import time

import pytest
from _redis_server import redis_server

from cowork_llm.client import RateLimitedLlm, create_llm_client
from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterAcquireError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter._rates import (
    DEFAULT_COMPLETION_TOKENS,
    IMAGE_TOKENS,
    LOW_DETAIL_IMAGE_TOKENS,
    estimate_request_tokens,
)
from cowork_llm.rate_limiter.backends import MemoryBackend, build_backend
from cowork_llm.testing import FakeLlmServer, MockLlm


def user(text):
    return [{"role": "user", "content": text}]


def test_the_estimate_is_the_larger_of_the_prompt_and_max_tokens():
    # OpenAI's rule: the maximum of max_tokens and the prompt estimate, not their sum.
    assert estimate_request_tokens(user("abcd" * 10), 50) == 50
    assert estimate_request_tokens(user("a" * 400), 10) == 100
    assert estimate_request_tokens(user("abcde"), 1) == 2  # 5 chars -> 2 tokens, rounded up
    messages = [{"role": "system", "content": "x" * 8}, {"role": "user", "content": "y" * 4}]
    assert estimate_request_tokens(messages, None) == DEFAULT_COMPLETION_TOKENS


def test_images_weigh_the_documented_amount_not_their_base64_length():
    image = {"url": "data:image/png;base64," + "A" * 40_000}
    parts = [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": image}]
    assert estimate_request_tokens([{"role": "user", "content": parts}], 1) == 1 + IMAGE_TOKENS
    low = [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {**image, "detail": "low"}},
           {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    assert estimate_request_tokens([{"role": "user", "content": low}], 1) == \
        1 + LOW_DETAIL_IMAGE_TOKENS + IMAGE_TOKENS


def test_tokens_are_spent_and_refill_over_the_minute():
    backend = MemoryBackend(RateLimitConfig(min_interval_seconds=0, tokens_per_minute=6000))
    assert backend.try_acquire(tokens=6000) == 0.0  # the whole budget at once
    wait = backend.try_acquire(tokens=100)  # refills at 100 tokens per second
    assert 0.95 <= wait <= 1.05, wait
    assert backend.try_acquire(tokens=1) > 0  # nothing was spent by the refused ask


def test_a_refusal_for_tokens_takes_no_request_slot():
    backend = MemoryBackend(RateLimitConfig(min_interval_seconds=0, requests_per_minute=2,
                                            tokens_per_minute=1000))
    assert backend.try_acquire(tokens=1000) == 0.0
    assert backend.try_acquire(tokens=500) > 0  # refused on tokens
    assert backend._requests.count() == 1  # only the admitted request is in the log


def test_heavy_requests_take_constant_memory():
    backend = MemoryBackend(RateLimitConfig(min_interval_seconds=0, tokens_per_minute=10_000_000))
    for _ in range(10):
        assert backend.try_acquire(tokens=15_000) == 0.0
    assert len(backend._tokens.store.read(backend._tokens.algorithm, backend._tokens.rates)) == 1
    assert backend._requests is None  # no request rate configured: no log at all


def test_a_request_heavier_than_the_budget_fails_at_once_even_behind_a_queue():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=30, tokens_per_minute=1000))
    holder = limiter.acquire(tokens=10)  # the next start is 30 s away
    started = time.monotonic()
    with pytest.raises(LimiterAcquireError) as caught:
        limiter.acquire(tokens=1001)
    assert time.monotonic() - started < 1.0
    text = str(caught.value)
    assert "1001 tokens" in text and "tokens_per_minute = 1000" in text and "never fit" in text
    assert limiter.queued == 0
    holder.release()
    limiter.close()


def test_threads_sharing_a_token_budget_never_overspend():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=8,
                                          tokens_per_minute=60_000))
    admitted, lock = [], threading.Lock()

    def worker():
        for _ in range(5):
            with limiter.slot(tokens=1000):
                with lock:
                    admitted.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(admitted) == 40
    assert max(admitted) - started < 2.0  # 40 x 1000 fit the initial 60 000 at once
    # 20 000 left plus the refill since (1000 a second): a little more must not fit.
    refilled = (time.monotonic() - started) * 1000
    assert limiter.backend.try_acquire(tokens=20_000 + int(refilled) + 200) > 0
    limiter.close()


def test_the_client_weighs_each_request_and_refuses_an_oversized_one():
    inner = MockLlm()
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, tokens_per_minute=2000))
    client = RateLimitedLlm(inner, limiter)
    client.chat(user("a" * 400), max_tokens=1500)  # max(100, 1500) tokens: fits
    assert 0 < limiter.backend.try_acquire(tokens=600)  # and was spent
    with pytest.raises(LimiterAcquireError, match="2500 tokens"):
        client.chat(user("a" * 10_000), max_tokens=1400)  # the prompt alone is 2500
    assert inner.call_count == 1  # nothing sent for the refused call
    limiter.close()


def test_the_model_max_tokens_counts_when_the_call_sets_none():
    with FakeLlmServer() as server:
        client = create_llm_client(server.config(max_tokens=5000, tokens_per_minute=4000,
                                                 key="tpm-model-max"))
        with pytest.raises(LimiterAcquireError, match="5000 tokens"):
            client.chat(user("hey"))
        assert server.request_count == 0


@pytest.fixture(params=["sqlite", "redis"])
def shared_config(request, tmp_path):
    if request.param == "sqlite":
        yield dict(backend="sqlite", path=str(tmp_path / "tpm.sqlite"))
    else:
        with redis_server() as url:
            yield dict(backend="redis", redis_url=url)


def test_the_token_budget_is_shared_between_members(shared_config):
    config = RateLimitConfig(min_interval_seconds=0, tokens_per_minute=6000, key="tpm", **shared_config)
    first, second = build_backend(config), build_backend(config)
    try:
        assert first.try_acquire(tokens=5900) == 0.0
        assert second.try_acquire(tokens=100) == 0.0
        assert 0.95 <= second.try_acquire(tokens=100) <= 1.05  # both spent from one budget
        # second now holds the front ticket of the shared queue: first only polls behind it
        assert first.try_acquire(tokens=100) > 0
        second.withdraw()
        assert first.try_acquire(tokens=100) > 0.9
    finally:
        first.close()
        second.close()


def test_tool_call_arguments_and_tool_definitions_are_text_of_the_request():
    call = {"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "' + "x" * 3991 + '"}'}}  # 4000 characters
    messages = [{"role": "user", "content": "a" * 400},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "b" * 400}]
    assert estimate_request_tokens(messages, 1) == 100 + 1000 + 100
    tools = [{"type": "function", "function": {"name": "lookup", "description": "d" * 4000}}]
    definitions = len(json.dumps(tools))
    assert estimate_request_tokens(user("a" * 400), 1, tools=tools) == -(-(400 + definitions) // 4)
    # a tool call the estimate cannot read (no function, arguments not text) weighs nothing
    odd = [{"role": "assistant", "content": "a" * 40,
            "tool_calls": [{"id": "c2"}, {"function": {"arguments": {"q": 1}}}, "junk"]}]
    assert estimate_request_tokens(odd, 1) == 10


def test_content_parts_the_estimate_cannot_read_are_skipped_not_the_rest():
    parts = ["stray text", {"type": "text", "text": "a" * 400}]
    assert estimate_request_tokens([{"role": "user", "content": parts}], 1) == 100
