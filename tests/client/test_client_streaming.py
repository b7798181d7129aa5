"""RateLimitedLlm.stream through create_llm_client and FakeLlmServer (both providers), and
over MockLlm / a plain Llm: the slot is held while the stream is open and given back on
every way out, retries happen only before the first piece, usage is counted, and
`cowork-llm ask --stream` prints pieces as they come."""

import gc
import io
import os
import subprocess
import sys
import threading

import pytest

from cowork_llm import create_llm_client
from cowork_llm.cli import main as cli_main
from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import RateLimitConfig, RetryConfig
from cowork_llm.errors import (
    ApiConnectionError,
    AuthenticationError,
    BadRequestError,
    LimiterAcquireError,
    ServerError,
)
from cowork_llm.llm import Llm
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.results import ChatResult
from cowork_llm.retry import RetryPolicy
from cowork_llm.streaming import ChatStream, wait_for_collected_streams
from cowork_llm.testing import FakeLlmServer, MockLlm

HELLO = [{"role": "user", "content": "one two three four five six"}]
ANSWER = "echo: one two three four five six"
K1, K2 = "sk-first-key-0000000001", "sk-second-key-000000002"
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture
def server():
    with FakeLlmServer(api_key="test-key") as server:
        yield server


def client_for(server, **overrides):
    """One request at a time, and a bounded wait for a slot: a leaked slot shows up as a
    LimiterAcquireError after 3 s instead of a hang."""
    overrides.setdefault("max_concurrent", 1)
    overrides.setdefault("acquire_timeout_seconds", 3.0)
    return create_llm_client(server.config(**overrides))


# --- to the end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_to_the_end_releases_the_slot_and_counts_usage(server, provider):
    with client_for(server, provider=provider) as llm:
        stream = llm.stream(HELLO)
        assert isinstance(stream, ChatStream)
        assert llm.limiter.in_flight == 1  # held while the answer is still arriving
        pieces = list(stream)
        assert llm.limiter.in_flight == 0
        assert len(pieces) > 1 and "".join(pieces) == ANSWER == stream.content
        assert stream.closed and stream.finish_reason is not None
        assert stream.usage is not None and stream.usage.completion_tokens > 0
        usage = llm.usage()
        assert usage.total.requests == 1 and usage.total.failures == 0
        assert usage.total.completion_tokens == stream.usage.completion_tokens
    assert server.last_request.body["stream"] is True


def test_stream_content_comes_from_the_base_class(server):
    with client_for(server) as llm:
        stream = llm.stream_content("hi", system_prompt="be brief")
        assert isinstance(stream, ChatStream)
        assert "".join(stream) == "echo: hi"
    assert server.last_request.body["messages"][0] == {"role": "system", "content": "be brief"}


def test_bad_arguments_fail_before_any_slot(server):
    with client_for(server) as llm:
        with pytest.raises(ValueError, match="messages"):
            llm.stream([])
        with pytest.raises(ValueError, match="temperature"):
            llm.stream(HELLO, temperature=3)
        assert llm.limiter.admitted_count == 0
    assert server.request_count == 0


# --- leaving early: the next call must not wait for a leaked slot --------------------------------


def test_abandoned_stream_is_freed_when_dropped(server):
    with client_for(server) as llm:

        def read_one_piece():
            stream = llm.stream(HELLO)
            return next(stream)  # the stream goes out of scope still open

        assert read_one_piece() == "echo: "
        assert llm.limiter.in_flight == 0
        assert llm.generate_content("next") == "echo: next"  # no LimiterAcquireError after 3 s


def test_abandoned_stream_in_a_reference_cycle_is_freed_by_gc(server):
    with client_for(server) as llm:
        stream = llm.stream(HELLO)
        next(stream)
        holder = {"stream": stream}
        holder["self"] = holder  # a cycle: only the cycle collector can free it
        del stream, holder
        gc.collect()
        # Ended by the reaper thread, not inside the collection (see cowork_llm.streaming).
        assert wait_for_collected_streams()
        assert llm.limiter.in_flight == 0
        assert llm.generate_content("next") == "echo: next"


def test_break_inside_with_releases_the_slot(server):
    closed = []
    with client_for(server) as llm:
        with llm.stream(HELLO) as stream:
            stream.on_close.append(lambda: closed.append(llm.limiter.in_flight))
            for _piece in stream:
                break
            assert llm.limiter.in_flight == 1
        assert closed == [0]  # our callback ran after the slot was given back
        assert llm.generate_content("next") == "echo: next"


def test_close_releases_the_slot_once(server):
    with client_for(server) as llm:
        stream = llm.stream(HELLO)
        next(stream)
        stream.close()
        stream.close()
        assert llm.limiter.in_flight == 0
        assert list(stream) == []
        usage = llm.usage().total
        # Closed early still counts as a request, with its tokens unknown.
        assert usage.requests == 1 and usage.failures == 0 and usage.unreported_usage == 1


def test_an_open_stream_holds_the_slot_against_other_threads(server):
    with client_for(server) as llm:
        stream = llm.stream(HELLO)
        next(stream)
        answers = []
        waiter = threading.Thread(target=lambda: answers.append(llm.generate_content("later")))
        waiter.start()
        assert llm.limiter.wait_for_queued(1, timeout=5.0)
        assert len(server.chat_requests) == 1  # the other call waits, not sent
        stream.close()
        waiter.join(5.0)
        assert answers == ["echo: later"]


def test_many_threads_streaming_and_abandoning_leak_no_slot(server):
    """16 threads share one client (max_concurrent=2): some read to the end, some stop
    after one piece and drop the stream, some close it; all finish, none waits for a leak."""
    errors = []
    with client_for(server, max_concurrent=2, acquire_timeout_seconds=10.0) as llm:

        def worker(index):
            try:
                for round_ in range(5):
                    stream = llm.stream([{"role": "user", "content": f"w{index} r{round_} a b c"}])
                    mode = (index + round_) % 3
                    if mode == 0:
                        assert "".join(stream) == f"echo: w{index} r{round_} a b c"
                    elif mode == 1:
                        next(stream)
                        del stream
                    else:
                        next(stream)
                        stream.close()
            except Exception as error:  # collected: an assert in a thread would be lost
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30.0)
        assert errors == []
        assert llm.limiter.in_flight == 0 and llm.limiter.queued == 0
        assert llm.limiter.admitted_count == 80
        assert llm.usage().total.requests == 80
    assert len(server.chat_requests) == 80


# --- failures ----------------------------------------------------------------------------------


# Events before the cut: OpenAI's first is the role alone; Anthropic's first two
# (message_start, content_block_start) carry no text either.
@pytest.mark.parametrize(("provider", "after_chunks"), [("openai", 3), ("anthropic", 4)])
def test_failure_mid_stream_raises_the_mapped_error_and_is_not_retried(server, provider, after_chunks):
    server.fail_mid_stream_next(after_chunks=after_chunks)
    with client_for(server, provider=provider) as llm:
        stream = llm.stream(HELLO)
        got = []
        with pytest.raises(ApiConnectionError, match="mid-answer"):
            for piece in stream:
                got.append(piece)
        assert got and "".join(got) != ANSWER
        assert llm.limiter.in_flight == 0
        assert llm.usage().total.failures == 1
        assert llm.generate_content("next") == "echo: next"
    assert len(server.chat_requests) == 2  # the broken stream once, then "next"


def test_cut_before_the_first_piece_is_retried(server):
    server.fail_mid_stream_next(after_chunks=0)
    with client_for(server) as llm:
        assert "".join(llm.stream(HELLO)) == ANSWER
        assert llm.limiter.in_flight == 0
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_503_before_the_first_piece_is_retried(server, provider):
    server.fail_next(status=503, times=2)
    with client_for(server, provider=provider) as llm:
        stream = llm.stream(HELLO)
        assert "".join(stream) == ANSWER
        assert llm.limiter.in_flight == 0
        assert llm.limiter.admitted_count == 3  # a slot per attempt
        assert llm.usage().total.retries == 2
    assert len(server.chat_requests) == 3


def test_retries_exhausted_raise_with_attempts_and_free_the_slot(server):
    server.fail_next(status=500, times=3)
    with client_for(server, max_attempts=3) as llm:
        with pytest.raises(ServerError) as info:
            llm.stream(HELLO)
        assert info.value.attempts == 3
        assert llm.limiter.in_flight == 0
        assert llm.usage().total.failures == 1
    assert len(server.chat_requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("status", "error"), [(400, BadRequestError), (401, AuthenticationError)])
def test_client_errors_are_not_retried(server, provider, status, error):
    server.fail_next(status=status)
    with client_for(server, provider=provider) as llm, pytest.raises(error):
        llm.stream(HELLO)
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rejected_key_leaves_the_rotation_and_the_stream_uses_the_next(provider):
    with FakeLlmServer(api_key=K2) as server:
        with create_llm_client(server.config(provider=provider, api_key=K1,
                                             extra_api_keys=(K2,))) as llm:
            assert "".join(llm.stream(HELLO)) == ANSWER
            assert "".join(llm.stream(HELLO)) == ANSWER
        keys = [r.headers.get("x-api-key") or r.headers["authorization"][7:] for r in server.chat_requests]
    assert keys == [K1, K2, K2]


def test_a_429_rotates_the_key_before_the_first_piece():
    with FakeLlmServer(api_key=(K1, K2)) as server:
        server.fail_next(status=429, retry_after=0.01)
        with create_llm_client(server.config(api_key=K1, extra_api_keys=(K2,))) as llm:
            assert "".join(llm.stream(HELLO)) == ANSWER
        keys = [r.headers["authorization"][7:] for r in server.chat_requests]
    assert keys == [K1, K2]


# --- inner Llms without a ChatStream ----------------------------------------------------------------


@pytest.fixture
def limiter():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, acquire_timeout_seconds=3.0))
    yield limiter
    limiter.close()


def quick_retry(max_attempts=3):
    return RetryPolicy(RetryConfig(max_attempts=max_attempts), sleep=lambda seconds: None)


def test_mock_llm_generator_is_wrapped_and_retried_before_the_first_piece(limiter):
    mock = MockLlm(model="mock-model")
    mock.enqueue(ServerError("down", status_code=503), "alpha beta gamma")
    with RateLimitedLlm(mock, limiter, quick_retry()) as llm:
        stream = llm.stream(HELLO)
        assert isinstance(stream, ChatStream) and stream.model == "mock-model"
        assert limiter.in_flight == 1
        assert "".join(stream) == "alpha beta gamma"
        assert limiter.in_flight == 0 and limiter.admitted_count == 2
    assert [call.kind for call in mock.calls] == ["stream", "stream"]


def test_mock_llm_stream_abandoned_frees_the_slot(limiter):
    mock = MockLlm(lambda messages: "alpha beta gamma delta")
    with RateLimitedLlm(mock, limiter, quick_retry()) as llm:
        stream = llm.stream(HELLO)
        next(stream)
        del stream
        assert limiter.in_flight == 0
        assert llm.generate_content("next") == "alpha beta gamma delta"


class ChatOnly(Llm):
    """An Llm that only implements send: its stream is the base class's one piece."""

    name = "chat-only"

    def send(self, messages, options):
        return ChatResult(content="whole answer", model="chat-only-model")


def test_an_llm_without_streaming_gives_one_piece(limiter):
    with RateLimitedLlm(ChatOnly(), limiter, quick_retry()) as llm:
        with llm.stream(HELLO) as stream:
            assert list(stream) == ["whole answer"]
        assert limiter.in_flight == 0


def test_no_slot_in_time_raises_and_leaves_nothing_behind():
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, acquire_timeout_seconds=0.2))
    mock = MockLlm(lambda messages: "a b c")
    try:
        with RateLimitedLlm(mock, limiter, quick_retry()) as llm:
            held = llm.stream(HELLO)
            with pytest.raises(LimiterAcquireError):
                llm.stream(HELLO)
            held.close()
            assert limiter.in_flight == 0 and limiter.queued == 0
            assert "".join(llm.stream(HELLO)) == "a b c"
    finally:
        limiter.close()


# --- cowork-llm ask --stream ----------------------------------------------------------------------


def write_config(server, path):
    path.write_text(
        "[llm.model]\n"
        f'base_url = "{server.base_url}"\napi_key = "test-key"\nmodel_name = "fake-model"\n'
        "[llm.rate_limit]\nmin_interval_seconds = 0\n",
        encoding="utf-8",
    )
    path.chmod(0o600)


class FlushRecorder(io.StringIO):
    """A stdout that remembers what had been written at each flush."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def flush(self):
        self.flushed.append(self.getvalue())
        super().flush()


def test_ask_stream_flushes_every_piece(server, tmp_path, monkeypatch):
    write_config(server, tmp_path / "config.toml")
    stdout = FlushRecorder()
    monkeypatch.setattr(sys, "stdout", stdout)
    code = cli_main(["ask", "--stream", "--config", str(tmp_path / "config.toml"), "one two three"])
    assert code == 0
    assert stdout.getvalue() == "echo: one two three\n"
    flushed = stdout.flushed
    assert flushed[:4] == ["echo: ", "echo: one ", "echo: one two ", "echo: one two three"]
    assert server.last_request.body["stream"] is True


def test_ask_stream_output_arrives_before_the_answer_ends(tmp_path):
    """Through a pipe, as a user sees it: the first read returns the first piece alone
    while the server is still pacing out the rest (0.4 s between events)."""
    with FakeLlmServer(api_key="test-key", stream_delay_seconds=0.4) as slow:
        write_config(slow, tmp_path / "config.toml")
        process = subprocess.Popen(
            [sys.executable, "-m", "cowork_llm", "ask", "--stream", "--config",
             str(tmp_path / "config.toml"), "one two three"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            first = os.read(process.stdout.fileno(), 1000)
            rest, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, err
    assert first == b"echo: "
    assert first + rest == b"echo: one two three\n"


def test_ask_stream_failure_mid_answer_exits_1(server, tmp_path, capsys):
    write_config(server, tmp_path / "config.toml")
    server.fail_mid_stream_next(after_chunks=2)
    code = cli_main(["ask", "--stream", "--config", str(tmp_path / "config.toml"), "one two three four"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.startswith("echo:")
    assert "ApiConnectionError" in captured.err or "mid-answer" in captured.err
    assert "test-key" not in captured.out + captured.err


def test_a_stream_weighs_its_tokens_against_tokens_per_minute():
    """Like chat, each stream attempt counts the larger of prompt/4 and max_tokens
    against the token budget: two 60-token streams do not fit in 100 tokens a minute."""
    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0, max_concurrent=4,
                                          tokens_per_minute=100, acquire_timeout_seconds=0.3))
    try:
        with RateLimitedLlm(MockLlm(lambda messages: "a b"), limiter, quick_retry()) as llm:
            assert "".join(llm.stream(HELLO, max_tokens=60)) == "a b"
            with pytest.raises(LimiterAcquireError):
                llm.stream(HELLO, max_tokens=60)
            assert limiter.in_flight == 0
    finally:
        limiter.close()
