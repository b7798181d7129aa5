"""Streaming: the SSE parser, ChatStream's lifetime (on_close exactly once on every
exit path), and stream() of both providers against responses and FakeLlmServer."""

import gc
import json
import logging
import threading

import pytest
import requests
import responses

from cowork_llm.config import ModelConfig
from cowork_llm.errors import (
    ApiConnectionError,
    AuthenticationError,
    InvalidResponseError,
    RateLimitError,
    ServerError,
)
from cowork_llm.providers import build_provider
from cowork_llm.providers._base import HttpProvider
from cowork_llm.providers._sse import LineTooLong, SseEvent, iter_events, iter_lines
from cowork_llm.results import Usage
from cowork_llm.streaming import ChatStream, StreamState
from cowork_llm.testing import FakeLlmServer

KEY = "sk-stream-0123456789SECRET"
BASE = "https://api.example.com/v1"
MESSAGES = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hello there world"}]


def make_config(provider="openai", **overrides):
    fields = {"base_url": BASE, "api_key": KEY, "model_name": "m-1", "provider": provider}
    fields.update(overrides)
    return ModelConfig(**fields)


def sse(data, event=None):
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n"


def openai_chunk(content=None, finish=None, model="m-1-2024"):
    delta = {} if content is None else {"content": content}
    return sse({"id": "c1", "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def openai_body(pieces=("Hel", "lo"), usage=True, done=True):
    body = openai_chunk("") + "".join(openai_chunk(p) for p in pieces) + openai_chunk(None, "stop")
    if usage:
        body += sse({"id": "c1", "object": "chat.completion.chunk", "model": "m-1-2024", "choices": [],
                     "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}})
    return body + (sse("[DONE]") if done else "")


def anthropic_body(pieces=("Hel", "lo"), stop=True):
    events = [
        sse({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "content": [],
                                                  "usage": {"input_tokens": 11, "output_tokens": 1}}},
            "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start"),
        sse({"type": "ping"}, "ping"),
    ]
    events += [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                   "content_block_delta") for p in pieces]
    events += [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 4}}, "message_delta")]
    if stop:
        events.append(sse({"type": "message_stop"}, "message_stop"))
    return "".join(events)


URLS = {"openai": BASE + "/chat/completions", "anthropic": BASE + "/messages"}
BODIES = {"openai": openai_body, "anthropic": anthropic_body}


@pytest.fixture
def mock():
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def captured(monkeypatch):
    """The responses the providers got, to check they were closed."""
    seen = []
    original = HttpProvider._send

    def spy(self, body, *, stream=False):
        response = original(self, body, stream=stream)
        seen.append(response)
        return response

    monkeypatch.setattr(HttpProvider, "_send", spy)
    return seen


def add_stream(mock, provider, body, status=200, headers=None):
    mock.post(URLS[provider], body=body.encode(), status=status,
              content_type="text/event-stream", headers=headers or {})


# --- the SSE parser -------------------------------------------------------------------------


def events_of(*chunks):
    return list(iter_events(iter_lines(chunks)))


def test_sse_line_endings_crlf_lf_and_cr_even_split_between_chunks():
    assert events_of(b"data: a\r\n\r\n", b"data: b\n\n", b"data: c\r\r") == [
        SseEvent("message", "a"), SseEvent("message", "b"), SseEvent("message", "c")]
    # a CR at the end of one chunk and its LF at the start of the next are one line end,
    # not a blank line that would cut the event in two
    assert events_of(b"data: x\r", b"\ndata: y\r", b"\n\r\n") == [SseEvent("message", "x\ny")]


def test_sse_multi_line_data_comments_event_names_ids_and_bom():
    stream = (b"\xef\xbb\xbf: keep-alive\n"
              b"event: delta\nid: 7\ndata: first\ndata:second\ndata\nretry: 10\n\n"
              b"data: {\"a\": 1}\n\n")
    assert events_of(stream) == [SseEvent("delta", "first\nsecond\n", "7"),
                                 SseEvent("message", '{"a": 1}', "7")]


def test_sse_fields_split_across_many_tiny_chunks_and_utf8_split_mid_character():
    raw = "event: e\ndata: héllo ✓\n\n".encode()
    assert events_of(*[raw[i:i + 1] for i in range(len(raw))]) == [SseEvent("e", "héllo ✓")]


def test_sse_events_without_data_are_dropped_and_a_half_line_at_the_end_is_not_a_line():
    assert events_of(b"event: ping\n\n", b"data: done\n", b"data: {\"cut") == [SseEvent("message", "done")]


# --- ChatStream lifetime ----------------------------------------------------------------------


class FakeResponse:
    def __init__(self):
        self.closes = 0

    def close(self):
        self.closes += 1


def make_stream(pieces):
    response = FakeResponse()
    stream = ChatStream(iter(pieces), StreamState(model="m"), response=response)
    calls = []
    stream.on_close.append(lambda: calls.append(1))
    return stream, response, calls


def failing_pieces():
    yield "a"
    raise ApiConnectionError("cut")


def test_on_close_runs_once_when_exhausted():
    stream, response, calls = make_stream(["a", "b"])
    assert list(stream) == ["a", "b"] and stream.content == "ab"
    assert stream.closed and calls == [1] and response.closes == 1
    stream.close()
    assert list(stream) == [] and calls == [1] and response.closes == 1


def test_on_close_runs_once_when_closed_early_by_with_block():
    stream, response, calls = make_stream(["a", "b", "c"])
    with stream:
        first = next(stream)
    assert first == "a" and calls == [1] and response.closes == 1
    stream.close()
    assert calls == [1]


def test_on_close_runs_once_on_error_mid_stream_and_the_error_surfaces():
    stream, response, calls = make_stream(failing_pieces())
    assert next(stream) == "a"
    with pytest.raises(ApiConnectionError):
        next(stream)
    assert stream.closed and calls == [1] and response.closes == 1
    with pytest.raises(StopIteration):
        next(stream)


def test_on_close_runs_when_an_abandoned_stream_is_garbage_collected():
    stream, response, calls = make_stream(["a", "b"])
    next(stream)
    del stream
    gc.collect()
    assert calls == [1] and response.closes == 1


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog):
    stream, _, calls = make_stream(["a"])
    stream.on_close.insert(0, lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="cowork_llm"):
        stream.close()
    assert calls == [1] and "on_close callback failed" in caplog.text


def test_close_from_many_threads_runs_on_close_exactly_once():
    for _ in range(20):
        stream, response, calls = make_stream(["a"] * 10)
        barrier = threading.Barrier(16)

        def close(stream=stream, barrier=barrier):
            barrier.wait()
            stream.close()

        threads = [threading.Thread(target=close) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == [1] and response.closes == 1


# --- stream() of the providers, against responses ----------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_to_the_end(mock, captured, provider):
    add_stream(mock, provider, BODIES[provider](("Hel", "lo", " you")),
               headers={"x-request-id": "req_9"} if provider == "openai" else {"request-id": "req_9"})
    with build_provider(make_config(provider)) as llm:
        stream = llm.stream(MESSAGES, max_tokens=50)
        assert list(stream) == ["Hel", "lo", " you"]
    assert stream.content == "Hello you" and stream.request_id == "req_9"
    if provider == "openai":
        expected = (Usage(7, 2, 9), "stop", "m-1-2024")
    else:
        expected = (Usage(11, 4, 15), "end_turn", "claude-x")
    assert (stream.usage, stream.finish_reason, stream.model) == expected
    assert stream.result().content == "Hello you"
    assert captured[0].raw.closed


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_request_body_asks_for_a_stream(mock, provider):
    add_stream(mock, provider, BODIES[provider]())
    with build_provider(make_config(provider)) as llm:
        list(llm.stream(MESSAGES))
    request = mock.calls[0].request
    body = json.loads(request.body)
    assert body["stream"] is True and request.headers["Accept"] == "text/event-stream"
    if provider == "openai":
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert body["system"] == "Be brief" and body["max_tokens"] == 1024


def test_openai_stream_without_usage_leaves_usage_none(mock):
    add_stream(mock, "openai", openai_body(usage=False))
    with build_provider(make_config()) as llm:
        stream = llm.stream(MESSAGES)
        assert "".join(stream) == "Hello"
    assert stream.usage is None and stream.finish_reason == "stop"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_closed_early_closes_the_response(mock, captured, provider):
    add_stream(mock, provider, BODIES[provider](("a", "b", "c")))
    with build_provider(make_config(provider)) as llm:
        stream = llm.stream(MESSAGES)
        ran = []
        stream.on_close.append(lambda: ran.append(1))
        assert next(stream) == "a"
        assert not captured[0].raw.closed
        stream.close()
        stream.close()
    assert ran == [1] and captured[0].raw.closed


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_that_ends_without_its_end_event_is_a_connection_error(mock, provider):
    body = openai_body(done=False) if provider == "openai" else anthropic_body(stop=False)
    add_stream(mock, provider, body)
    with build_provider(make_config(provider)) as llm:
        stream = llm.stream(MESSAGES)
        ran = []
        stream.on_close.append(lambda: ran.append(1))
        with pytest.raises(ApiConnectionError, match="ended before"):
            list(stream)
    assert stream.content == "Hello" and ran == [1]


def test_anthropic_error_event_mid_stream_is_mapped(mock):
    body = anthropic_body(stop=False).split("event: content_block_stop")[0]
    body += sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
    add_stream(mock, "anthropic", body)
    with build_provider(make_config("anthropic")) as llm:
        stream = llm.stream(MESSAGES)
        assert next(stream) == "Hel"
        with pytest.raises(ServerError, match="overloaded_error"):
            list(stream)
    assert stream.closed


def test_openai_error_object_mid_stream_is_mapped_and_redacted(mock):
    body = openai_chunk("Hi") + sse({"error": {"message": f"slow down {KEY}", "type": "rate_limit_error"}})
    add_stream(mock, "openai", body)
    with build_provider(make_config()) as llm:
        stream = llm.stream(MESSAGES)
        with pytest.raises(RateLimitError) as info:
            list(stream)
    assert KEY not in str(info.value) and "slow down" in str(info.value)


def test_an_event_that_is_not_json_is_an_invalid_response(mock):
    add_stream(mock, "openai", openai_chunk("Hi") + "data: {not json\n\n")
    with build_provider(make_config()) as llm:
        with pytest.raises(InvalidResponseError, match="not a JSON object"):
            list(llm.stream(MESSAGES))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status, error",
                         [(503, ServerError), (429, RateLimitError), (401, AuthenticationError)])
def test_error_status_raises_from_stream_itself(mock, provider, status, error):
    mock.post(URLS[provider], json={"error": {"message": "nope", "type": "x"}}, status=status)
    with build_provider(make_config(provider)) as llm:
        with pytest.raises(error):
            llm.stream(MESSAGES)


def test_connection_failure_raises_from_stream_itself(mock):
    mock.post(URLS["openai"], body=requests.ConnectionError("refused"))
    with build_provider(make_config()) as llm:
        with pytest.raises(ApiConnectionError):
            llm.stream(MESSAGES)


def test_bad_messages_raise_before_any_request(mock):
    with build_provider(make_config()) as llm:
        with pytest.raises(ValueError):
            llm.stream([])
    assert len(mock.calls) == 0


# --- against FakeLlmServer (real sockets, chunked encoding) -------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeLlmServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fresh(server):
    server.reset()
    return server


def fake_client(server, provider):
    return build_provider(server.config(provider=provider).model)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fake_server_stream_to_the_end(fresh, provider):
    with fake_client(fresh, provider) as llm:
        stream = llm.stream(MESSAGES)
        pieces = list(stream)
        assert "".join(pieces) == "echo: hello there world" and len(pieces) > 1
        assert stream.usage is not None and stream.usage.completion_tokens > 0
        assert stream.finish_reason in ("stop", "end_turn")
        assert stream.request_id and stream.request_id.startswith("req_fake")
        # the connection went back to the pool: the next call works on this session
        assert llm.chat(MESSAGES).content == "echo: hello there world"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fake_server_stream_failing_mid_stream(fresh, provider):
    fresh.fail_mid_stream_next(after_chunks=3)
    with fake_client(fresh, provider) as llm:
        stream = llm.stream(MESSAGES)
        ran = []
        stream.on_close.append(lambda: ran.append(1))
        with pytest.raises(ApiConnectionError, match="broke off mid-answer") as info:
            for _ in stream:
                pass
        assert info.value.request_id == stream.request_id
        assert ran == [1] and stream.closed
        assert llm.chat(MESSAGES).content == "echo: hello there world"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_fake_server_stream_abandoned_is_closed_by_gc(fresh, provider):
    slow = FakeLlmServer(api_key=KEY, stream_delay_seconds=0.05).start()
    try:
        with fake_client(slow, provider) as llm:
            stream = llm.stream(MESSAGES)
            ran = []
            stream.on_close.append(lambda: ran.append(1))
            next(stream)
            del stream
            gc.collect()
            assert ran == [1]
            assert llm.chat(MESSAGES).content == "echo: hello there world"
    finally:
        slow.stop()


def test_fake_server_stream_rejected_key_raises_from_stream(fresh):
    llm = build_provider(fresh.config(api_key="sk-wrong-0000000000000").model)
    with llm, pytest.raises(AuthenticationError):
        llm.stream(MESSAGES)


# --- found by mutation testing (TESTING.md) -------------------------------------------------


def test_an_error_of_an_unknown_type_mid_stream_is_a_server_error(mock):
    add_stream(mock, "openai", openai_chunk("Hi") + sse({"error": {"message": "odd",
                                                                   "type": "weird_error"}}))
    with build_provider(make_config()) as llm:
        with pytest.raises(ServerError, match="reported an error mid-stream: weird_error: odd"):
            list(llm.stream(MESSAGES))


def test_a_stream_that_breaks_off_says_how(fresh):
    fresh.fail_mid_stream_next(after_chunks=3)
    with fake_client(fresh, "openai") as llm:
        with pytest.raises(ApiConnectionError) as info:
            list(llm.stream(MESSAGES))
    message = str(info.value)
    assert message.startswith("the openai stream broke off mid-answer: ")
    detail = message.split("mid-answer: ", 1)[1]
    assert detail != "None" and "Error" in detail  # the exception's class and text


def test_each_request_is_logged_at_debug_with_url_model_status_and_time(mock, caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    add_stream(mock, "openai", openai_body())
    with build_provider(make_config()) as llm:
        list(llm.stream(MESSAGES))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST ")]
    assert len(lines) == 1
    assert lines[0].startswith(f"POST {URLS['openai']} (model m-1, stream): HTTP 200 in ")


def test_sse_an_event_left_open_at_the_end_keeps_all_its_data_lines():
    # Some servers omit the final blank line: the last event is still whole.
    assert events_of(b"data: first\ndata: second\n") == [SseEvent("message", "first\nsecond")]


def test_sse_a_line_of_exactly_max_line_bytes_is_accepted_even_split_over_chunks():
    line = b"data: " + b"x" * 26  # 32 bytes
    assert list(iter_lines([line, b"\n"], max_line=32)) == [line.decode()]
    assert list(iter_lines([line[:10], line[10:], b"\n"], max_line=32)) == [line.decode()]
    with pytest.raises(LineTooLong):
        list(iter_lines([line + b"y"], max_line=32))


def test_a_stream_carries_the_request_id_with_an_echoed_key_redacted(mock):
    add_stream(mock, "openai", openai_body(), headers={"x-request-id": f"req-{KEY}"})
    with build_provider(make_config()) as llm:
        with llm.stream(MESSAGES) as stream:
            assert "".join(stream) == "Hello"
    assert stream.request_id == "req-[REDACTED]"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_that_ends_early_names_the_request(mock, provider):
    body = openai_body(done=False) if provider == "openai" else anthropic_body(stop=False)
    add_stream(mock, provider, body, headers={"x-request-id": "req_cut"})
    with build_provider(make_config(provider)) as llm:
        with pytest.raises(ApiConnectionError) as info:
            list(llm.stream(MESSAGES))
    assert info.value.request_id == "req_cut"


def test_an_event_that_is_not_json_names_the_request(mock):
    add_stream(mock, "openai", openai_chunk("Hi") + "data: {not json\n\n",
               headers={"x-request-id": "req_bad"})
    with build_provider(make_config()) as llm:
        with pytest.raises(InvalidResponseError) as info:
            list(llm.stream(MESSAGES))
    assert info.value.request_id == "req_bad"


def test_an_error_mid_stream_without_a_type_is_labelled_error(mock):
    add_stream(mock, "openai", openai_chunk("Hi") + sse({"error": {"message": "it broke"}}))
    with build_provider(make_config()) as llm:
        with pytest.raises(ServerError) as info:
            list(llm.stream(MESSAGES))
    assert info.value.message == "openai reported an error mid-stream: error: it broke"


def test_sse_only_a_leading_bom_is_dropped_not_one_where_a_later_chunk_begins():
    # U+FEFF inside the data is text (a zero-width no-break space), wherever chunks split.
    assert events_of(b"\xef\xbb\xbfdata: a", b"\xef\xbb\xbfb\n\n") == [SseEvent("message", "a\ufeffb")]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_error_mid_stream_names_the_request(mock, provider):
    if provider == "openai":
        body = openai_chunk("Hi") + sse({"error": {"message": "slow down", "type": "rate_limit_error"}})
    else:
        body = anthropic_body(stop=False).split("event: content_block_stop")[0] + sse(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
    add_stream(mock, provider, body, headers={"x-request-id": "req_mid"})
    with build_provider(make_config(provider)) as llm:
        with pytest.raises((RateLimitError, ServerError)) as info:
            list(llm.stream(MESSAGES))
    assert info.value.request_id == "req_mid"
