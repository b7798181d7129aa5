"""MockLlm: scripted replies, errors, the call record under many threads, usage."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cowork_llm.errors import RateLimitError, ServerError
from cowork_llm.llm import Llm
from cowork_llm.results import ChatResult, Usage
from cowork_llm.testing import MockLlm, estimate_tokens

USER = [{"role": "user", "content": "hello"}]


def test_echoes_by_default_and_is_a_plain_llm():
    llm = MockLlm(model="tiny")
    assert isinstance(llm, Llm)
    assert llm.name == "mock:tiny"
    result = llm.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "abcdefgh"}])
    assert result.content == "echo: abcdefgh"
    assert result.model == "tiny" and result.finish_reason == "stop"
    assert result.request_id == "mock-1"
    assert llm.generate_content("again") == "echo: again"


def test_usage_is_chars_over_four():
    llm = MockLlm(["x" * 9])
    usage = llm.chat([{"role": "user", "content": "a" * 8}, {"role": "assistant", "content": "b" * 4}]).usage
    assert usage == Usage(prompt_tokens=3, completion_tokens=3, total_tokens=6)
    assert estimate_tokens("") == 1 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2


def test_replies_from_a_list_in_order_then_a_loud_failure():
    llm = MockLlm(["one", "two"])
    assert [llm.generate_content("a"), llm.generate_content("b")] == ["one", "two"]
    with pytest.raises(AssertionError, match="ran out"):
        llm.generate_content("c")
    assert llm.call_count == 3


def test_callable_replies_and_enqueue_takes_precedence():
    llm = MockLlm(lambda messages: messages[-1]["content"].upper())
    llm.enqueue("scripted")
    assert llm.generate_content("hi") == "scripted"
    assert llm.generate_content("hi") == "HI"
    assert llm.pending == 0


def test_enqueue_returns_whole_chat_results():
    canned = ChatResult(content="c", model="other", finish_reason="length")
    assert MockLlm().enqueue(canned).chat(USER) is canned


def test_queued_errors_are_raised_as_fresh_copies():
    error = ServerError("boom", status_code=503, retry_after=2.0)
    llm = MockLlm().fail_next(error, times=2)
    raised = []
    for _ in range(2):
        with pytest.raises(ServerError) as info:
            llm.generate_content("x")
        raised.append(info.value)
    assert raised[0] is not raised[1]
    assert all(e.status_code == 503 and e.retry_after == 2.0 for e in raised)
    assert llm.generate_content("x") == "echo: x"  # back to the responder afterwards


def test_an_error_class_is_instantiated_with_a_message():
    llm = MockLlm().enqueue(RateLimitError)
    with pytest.raises(RateLimitError, match="call 1"):
        llm.generate_content("x")


@pytest.mark.parametrize("bad", [
    [], [{"role": "robot", "content": "x"}], "hello", [{"role": "user", "content": ""}],
])
def test_bad_messages_raise_value_error_and_are_not_recorded(bad):
    llm = MockLlm()
    with pytest.raises(ValueError):
        llm.chat(bad)
    assert llm.call_count == 0


@pytest.mark.parametrize("options", [{"temperature": 3}, {"max_tokens": 0}, {"temperature": "hot"}])
def test_bad_options_raise_value_error(options):
    with pytest.raises(ValueError):
        MockLlm().chat(USER, **options)


def test_record_holds_messages_options_thread_and_time():
    llm = MockLlm()
    llm.chat(USER, temperature=0.5, stop="END", seed=3, extra_body={"x": 1}, cache=False)
    call = llm.last_call
    assert call.messages == USER and call.prompt == "hello"
    assert call.options == {"temperature": 0.5, "max_tokens": None, "top_p": None, "stop": ("END",),
                            "seed": 3, "response_format": None, "reasoning_effort": None,
                            "extra_body": {"x": 1}, "cache": False, "tools": None, "tool_choice": None,
                            "parallel_tool_calls": None}
    assert call.thread == threading.current_thread().name
    assert call.monotonic > 0 and call.wall > 0 and call.kind == "chat"
    llm.reset()
    assert llm.calls == [] and llm.call_count == 0
    with pytest.raises(AssertionError, match="never called"):
        _ = llm.last_call


def test_record_is_complete_under_32_threads():
    llm = MockLlm()
    prompts = [f"p{i}" for i in range(320)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(llm.generate_content, prompts))
    assert answers == [f"echo: {p}" for p in prompts]  # no cross-talk between threads
    calls = llm.calls
    assert sorted(c.prompt for c in calls) == sorted(prompts)
    assert sorted(c.index for c in calls) == list(range(1, 321))  # unique, none lost
    assert len({c.thread for c in calls}) > 1


def test_queue_is_consumed_exactly_once_under_threads():
    llm = MockLlm([f"r{i}" for i in range(200)])
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: llm.generate_content("x"), range(200)))
    assert sorted(answers) == sorted(f"r{i}" for i in range(200))


def test_gate_holds_calls_in_flight_until_set():
    gate = threading.Event()
    llm = MockLlm(gate=gate)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(llm.generate_content, f"q{i}") for i in range(3)]
        deadline = time.monotonic() + 5
        while llm.call_count < 3 and time.monotonic() < deadline:  # wait for a condition
            time.sleep(0.001)
        assert llm.call_count == 3
        assert not any(f.done() for f in futures)  # recorded, but held at the gate
        gate.set()
        assert sorted(f.result(timeout=5) for f in futures) == ["echo: q0", "echo: q1", "echo: q2"]


def test_stream_yields_pieces_that_join_to_the_reply():
    llm = MockLlm(["the quick brown fox"])
    pieces = list(llm.stream_content("x"))
    assert len(pieces) == 4 and "".join(pieces) == "the quick brown fox"
    assert llm.last_call.kind == "stream"


def test_stream_raises_a_queued_error_when_iterated():
    llm = MockLlm().enqueue(ServerError("down", status_code=500))
    pieces = llm.stream(USER)
    with pytest.raises(ServerError):
        next(pieces)


def test_context_manager_closes():
    with MockLlm() as llm:
        assert not llm.closed
    assert llm.closed


def test_rejects_a_string_as_the_script():
    with pytest.raises(TypeError, match="not a string"):
        MockLlm("hello")  # type: ignore[arg-type]


def test_works_inside_rate_limited_llm_with_retries():
    from cowork_llm.client import RateLimitedLlm
    from cowork_llm.config import RateLimitConfig, RetryConfig
    from cowork_llm.rate_limiter import RateLimiter
    from cowork_llm.retry import RetryPolicy

    waits = []
    mock = MockLlm([ServerError("down", status_code=503), "wrapped"])
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0.0, key="mock-test"))
    try:
        wrapped = RateLimitedLlm(mock, limiter=limiter,
                                 retry=RetryPolicy(RetryConfig(max_attempts=3), sleep=waits.append))
        assert wrapped.name == "mock:mock-model"
        assert wrapped.generate_content("x") == "wrapped"
    finally:
        limiter.close()
    assert mock.call_count == 2 and len(waits) == 1
