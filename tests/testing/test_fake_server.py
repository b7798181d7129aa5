"""FakeLlmServer through plain `requests`: endpoints, streaming, every fault, auth, the
request record under many threads, and a clean stop/start."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest
import requests

from cowork_llm.config import LlmConfig, RetryConfig
from cowork_llm.testing import FakeLlmServer, Fault

KEY = "test-key-123456"
OPENAI = {"Authorization": f"Bearer {KEY}"}
ANTHROPIC = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
OPENAI_DETAILS = {"prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}}


def chat_body(text="hello world", **extra):
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(autouse=True)
def _no_leaked_server_threads():
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("fake-llm-")]
    assert leaked == [], "a stopped FakeLlmServer left threads behind"


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as running:
        yield running


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def post_chat(server, session=requests, headers=OPENAI, **kwargs):
    kwargs.setdefault("json", chat_body())
    kwargs.setdefault("timeout", 5)
    return session.post(server.base_url + "/chat/completions", headers=headers, **kwargs)


def post_messages(server, body=None, headers=ANTHROPIC, **kwargs):
    body = body if body is not None else {"max_tokens": 100, **chat_body()}
    return requests.post(server.base_url + "/messages", headers=headers, json=body, timeout=5, **kwargs)


def sse_events(response):
    """(event name or None, parsed data) for each server-sent event."""
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
            events.append((name, data if data == "[DONE]" else json.loads(data)))
            name = None
    return events


def server_threads(port):
    return [t for t in threading.enumerate() if t.name.startswith(f"fake-llm-{port}")]


# --- OpenAI chat completions --------------------------------------------------------------


def test_chat_completion_is_a_realistic_openai_response(server):
    response = post_chat(server)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == "fake-model" and abs(body["created"] - time.time()) < 60
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: hello world", "refusal": None}
    assert choice["finish_reason"] == "stop"
    # usage: chars/4 of the prompt ("hello world": 11 → 3) and of the answer (17 → 5)
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, **OPENAI_DETAILS}


def test_reply_callable_sees_the_messages():
    seen = []

    def reply(messages):
        seen.append(messages)
        return f"{len(messages)} messages"

    with FakeLlmServer(reply=reply) as server:
        body = chat_body()
        body["messages"].insert(0, {"role": "system", "content": "be brief"})
        answer = post_chat(server, headers={}, json=body).json()
    assert answer["choices"][0]["message"]["content"] == "2 messages"
    assert seen[0][0] == {"role": "system", "content": "be brief"}


def test_a_failing_reply_callable_gives_a_500_saying_why():
    with FakeLlmServer(reply=lambda messages: 1 / 0) as server:
        response = post_chat(server)
    assert response.status_code == 500
    assert "ZeroDivisionError" in response.json()["error"]["message"]


def test_max_tokens_cuts_the_answer_with_finish_reason_length(server):
    body = post_chat(server, json=chat_body("a" * 40, max_tokens=2)).json()
    assert body["choices"][0]["message"]["content"] == "echo: aa"
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("body, needle", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "fake-model"}, "messages"),
    ({"model": "fake-model", "messages": []}, "messages"),
    ({"model": "fake-model", "messages": [{"role": "robot", "content": "x"}]}, "role"),
])
def test_invalid_requests_get_400_invalid_request_error(server, body, needle):
    response = post_chat(server, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and needle in error["message"]


def test_a_body_that_is_not_json_gets_400(server):
    response = post_chat(server, json=None, data=b"{nope")
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_unknown_path_gets_404(server):
    response = requests.post(server.base_url + "/completions", headers=OPENAI, json={}, timeout=5)
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_url"


def test_models_list_and_unknown_model():
    with FakeLlmServer(models=["m1", "m2"]) as server:
        listed = requests.get(server.base_url + "/models", timeout=5).json()
        assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["m1", "m2"]
        anthropic = requests.get(server.base_url + "/models", headers=ANTHROPIC, timeout=5).json()
        assert [m["type"] for m in anthropic["data"]] == ["model", "model"]
        assert anthropic["has_more"] is False
        response = post_chat(server, json=chat_body())  # "fake-model" is not served
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
        assert server.config().model.model_name == "m1"


def test_models_default_lists_fake_model(server):
    data = requests.get(server.base_url + "/models", headers=OPENAI, timeout=5).json()["data"]
    assert [m["id"] for m in data] == ["fake-model"]


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_openai_401_for_a_missing_or_wrong_key(server, headers):
    response = post_chat(server, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and "wrong" not in error["message"]


@pytest.mark.parametrize("key", [None, "wrong"])
def test_anthropic_401_in_its_own_shape(server, key):
    headers = {"anthropic-version": "2023-06-01", **({"x-api-key": key} if key else {})}
    response = post_messages(server, headers=headers)
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"


def test_several_keys_are_accepted_and_none_means_any():
    with FakeLlmServer(api_key=["k1", "k2"]) as server:
        assert post_chat(server, headers={"Authorization": "Bearer k2"}).status_code == 200
        assert post_chat(server, headers={"Authorization": "Bearer k3"}).status_code == 401
    with FakeLlmServer() as server:
        assert post_chat(server, headers={}).status_code == 200
        assert post_chat(server, headers={"Authorization": "Bearer anything"}).status_code == 200


# --- Anthropic Messages API ---------------------------------------------------------------------


def test_anthropic_message_response(server):
    body = {"max_tokens": 100, "system": "be brief", **chat_body("hi there")}
    response = post_messages(server, body)
    assert response.status_code == 200 and response.headers["request-id"].startswith("req_")
    message = response.json()
    assert message["id"].startswith("msg_") and message["type"] == "message"
    assert message["role"] == "assistant" and message["model"] == "fake-model"
    assert message["content"] == [{"type": "text", "text": "echo: hi there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": 4, "output_tokens": 4,  # "be brief"+"hi there": 16 chars
                                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


@pytest.mark.parametrize("headers, body, needle", [
    ({"x-api-key": KEY}, None, "anthropic-version"),
    (ANTHROPIC, chat_body(), "max_tokens"),
    (ANTHROPIC, {"max_tokens": 5, "model": "fake-model",
                 "messages": [{"role": "system", "content": "x"}]}, "role"),
])
def test_anthropic_invalid_requests(server, headers, body, needle):
    response = post_messages(server, body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert needle in response.json()["error"]["message"]


# --- streaming ------------------------------------------------------------------------------


def test_openai_stream_chunks_then_done(server):
    response = post_chat(server, json=chat_body(stream=True), stream=True)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [data for _, data in sse_events(response)]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "echo: hello world"
    assert len(chunks) >= 4  # role, several content pieces, finish
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_stream_with_usage_ends_with_a_usage_chunk(server):
    body = chat_body(stream=True, stream_options={"include_usage": True})
    events = [data for _, data in sse_events(post_chat(server, json=body, stream=True))]
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8,
                                    **OPENAI_DETAILS}
    assert all(e["usage"] is None for e in events[:-2])


def test_anthropic_stream_events_in_order(server):
    body = {"max_tokens": 100, "stream": True, **chat_body()}
    events = sse_events(post_messages(server, body, stream=True))
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert len(deltas) >= 2 and all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "echo: hello world"
    assert events[0][1]["message"]["usage"]["input_tokens"] == 3
    assert events[-2][1]["usage"] == {"output_tokens": 5}
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


# --- faults ------------------------------------------------------------------------------------


def test_fail_next_answers_the_status_then_recovers(server, http):
    server.fail_next(status=500, times=2)
    statuses = [post_chat(server, http).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert post_chat(server, http).status_code == 200
    assert server.pending_faults == []


@pytest.mark.parametrize("status, kind", [(429, "requests"), (502, "server_error"), (503, "server_error")])
def test_fail_next_uses_openai_error_shape(server, status, kind):
    server.fail_next(status=status)
    response = post_chat(server)
    assert response.status_code == status and response.json()["error"]["type"] == kind


def test_retry_after_in_seconds_date_and_ms(server):
    date = formatdate(time.time() + 30, usegmt=True)
    server.fail_next(429, retry_after=2).fail_next(429, retry_after=date).fail_next(429, retry_after_ms=1500)
    assert post_chat(server).headers["Retry-After"] == "2"
    assert post_chat(server).headers["Retry-After"] == date
    third = post_chat(server)
    assert third.headers["retry-after-ms"] == "1500" and "Retry-After" not in third.headers


def test_custom_body_headers_and_message(server):
    server.fail_next(418, body="<html>teapot</html>")
    server.fail_next(503, message="try later", headers={"x-request-id": "req_custom"})
    assert post_chat(server).text == "<html>teapot</html>"
    second = post_chat(server)
    assert second.json()["error"]["message"] == "try later"
    assert second.headers["x-request-id"] == "req_custom"


def test_anthropic_errors_use_its_shape(server):
    server.fail_next(529)
    response = post_messages(server)
    assert response.status_code == 529
    # Anthropic repeats the request id in the body.
    assert response.json() == {"type": "error", "request_id": response.headers["request-id"],
                               "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_quota_exceeded_for_each_provider(server):
    server.quota_exceeded_next(times=2)
    openai = post_chat(server)
    assert openai.status_code == 429
    assert openai.json()["error"]["code"] == openai.json()["error"]["type"] == "insufficient_quota"
    anthropic = post_messages(server)
    assert anthropic.status_code == 400 and "credit balance" in anthropic.json()["error"]["message"]


def test_drop_closes_the_connection_without_a_response(server, http):
    server.drop_next()
    with pytest.raises(requests.ConnectionError):
        post_chat(server, http)
    assert post_chat(server, http).status_code == 200  # the server is fine afterwards
    assert server.request_count == 2


def test_malformed_is_a_200_with_invalid_json(server):
    server.malformed_next()
    response = post_chat(server)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_empty_choices_and_empty_content(server):
    server.empty_choices_next(times=2)
    assert post_chat(server).json()["choices"] == []
    assert post_messages(server).json()["content"] == []


def test_delay_next_holds_the_response(server):
    server.delay_next(0.3)
    started = time.monotonic()
    assert post_chat(server).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_delay_longer_than_the_client_timeout_is_a_read_timeout(server, http):
    server.delay_next(5)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        post_chat(server, http, timeout=(2, 0.2))
    assert post_chat(server, http).status_code == 200  # another connection serves meanwhile
    assert time.monotonic() - started < 4


def test_latency_applies_to_every_response():
    with FakeLlmServer(latency_seconds=0.1) as server:
        started = time.monotonic()
        post_chat(server)
        requests.get(server.base_url + "/models", timeout=5)
        assert time.monotonic() - started >= 0.2


def test_fail_mid_stream_cuts_after_n_events_and_skips_plain_calls(server):
    server.fail_mid_stream_next(after_chunks=2)
    assert post_chat(server).status_code == 200  # not a stream: the fault waits
    received = []
    response = post_chat(server, json=chat_body(stream=True), stream=True)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in response.iter_lines():
            if line:
                received.append(line)
    assert len(received) == 2 and b"[DONE]" not in received
    assert sse_events(post_chat(server, json=chat_body(stream=True), stream=True))[-1][1] == "[DONE]"


def test_faults_can_target_a_path_and_keep_their_order(server):
    server.fail_next(500, path=server.MESSAGES_PATH).fail_next(502).fail_next(503)
    assert post_chat(server).status_code == 502  # the /messages fault does not match
    assert post_messages(server).status_code == 500
    assert post_chat(server).status_code == 503
    assert post_chat(server).status_code == 200


def test_faults_apply_before_auth(server):
    server.fail_next(503)
    assert post_chat(server, headers={}).status_code == 503
    assert post_chat(server, headers={}).status_code == 401


@pytest.mark.parametrize("kwargs, needle", [
    ({"kind": "explode"}, "kind"), ({"status": 42}, "status"), ({"times": 0}, "times"),
    ({"delay_seconds": -1}, "delay_seconds"), ({"path": "v1/chat"}, "path"),
])
def test_fault_validation_names_the_field(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Fault(**kwargs)


def test_injected_faults_are_taken_exactly_once_under_threads(server):
    server.fail_next(500, times=20)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: post_chat(server).status_code, range(60)))
    assert statuses.count(500) == 20 and statuses.count(200) == 40


# --- the record -----------------------------------------------------------------------------


def test_requests_are_recorded_with_headers_body_and_time(server, http):
    before = time.monotonic()
    post_chat(server, http, json=chat_body("one"))
    post_chat(server, http, json=chat_body("two"))
    first, second = server.requests
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == f"Bearer {KEY}" and first.api_key == KEY
    assert first.body == first.json == chat_body("one") and first.messages[0]["content"] == "one"
    assert first.model == "fake-model" and not first.stream
    assert before <= first.arrival_monotonic <= second.arrival_monotonic
    assert abs(first.arrival_wall - time.time()) < 60
    assert first.thread.startswith(f"fake-llm-{server.port}")
    assert first.client_port == second.client_port  # the session kept the connection alive
    assert KEY not in repr(first)
    assert server.last_request is second and server.chat_requests == [first, second]


def test_arrival_gaps_are_start_to_start(server):
    for _ in range(3):
        post_chat(server)
    times = [r.arrival_monotonic for r in server.requests]
    gaps = server.arrival_gaps()
    assert gaps == pytest.approx([times[1] - times[0], times[2] - times[1]])
    assert server.arrival_gaps(path=server.MODELS_PATH) == []


def test_wait_for_requests_returns_or_says_how_many_arrived(server):
    threading.Thread(target=lambda: [post_chat(server) for _ in range(3)], daemon=True).start()
    assert len(server.wait_for_requests(3, timeout=5)) == 3
    with pytest.raises(TimeoutError, match="3 arrived"):
        server.wait_for_requests(4, timeout=0.05)
    assert server.wait_for_requests(0, timeout=0.01, path=server.MESSAGES_PATH) == []


def test_reset_forgets_requests_and_faults(server):
    post_chat(server)
    server.fail_next(500)
    server.reset()
    assert server.request_count == 0 and server.pending_faults == []
    assert post_chat(server).status_code == 200
    with pytest.raises(AssertionError):
        _ = FakeLlmServer().last_request


def test_record_is_complete_under_32_threads(server):
    def worker(n):
        with requests.Session() as session:
            return [post_chat(server, session, json=chat_body(f"t{n}-{i}")).json() for i in range(10)]

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = [a for batch in pool.map(worker, range(32)) for a in batch]
    contents = sorted(a["choices"][0]["message"]["content"] for a in answers)
    expected = sorted(f"echo: t{n}-{i}" for n in range(32) for i in range(10))
    assert contents == expected  # every answer belongs to its own prompt
    recorded = server.requests
    assert len(recorded) == server.request_count == 320
    assert sorted(r.messages[0]["content"] for r in recorded) == sorted(e[6:] for e in expected)
    arrivals = [r.arrival_monotonic for r in recorded]
    assert len(server.arrival_gaps()) == 319 and min(server.arrival_gaps()) >= 0
    assert len(set(arrivals)) > 1
    assert len({r.client_port for r in recorded}) == 32  # one kept-alive connection per session


def test_64_concurrent_connections():
    barrier = threading.Barrier(64)
    with FakeLlmServer(latency_seconds=0.05) as server:
        def call(i):
            barrier.wait(timeout=10)
            return post_chat(server, json=chat_body(f"c{i}"), timeout=20).json()

        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(call, range(64)))
    assert sorted(a["choices"][0]["message"]["content"] for a in answers) == sorted(
        f"echo: c{i}" for i in range(64))
    assert len({r.thread for r in server.requests}) == 64


# --- lifecycle ---------------------------------------------------------------------------------


def test_base_url_and_free_port(server):
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1" and server.port > 0
    with FakeLlmServer() as other:
        assert other.port != server.port


def test_stop_closes_the_port_ends_threads_and_start_rebinds_it(http):
    server = FakeLlmServer().start()
    port = server.port
    post_chat(server, http)  # leaves an idle keep-alive connection with its handler thread
    assert len(server_threads(port)) == 2
    server.stop()
    assert not server.running and server_threads(port) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    server.stop()  # twice is fine
    with server:
        assert server.port == port
        assert post_chat(server).status_code == 200
    assert server_threads(port) == []
    assert server.request_count == 2  # the record survives a restart


def test_stop_does_not_wait_for_injected_delays():
    server = FakeLlmServer().start()
    server.delay_next(30)
    outcome = []

    def client():
        try:
            outcome.append(post_chat(server, timeout=20).status_code)
        except requests.RequestException as error:
            outcome.append(type(error))

    caller = threading.Thread(target=client)
    caller.start()
    server.wait_for_requests(1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    caller.join(10)
    assert outcome == [requests.ConnectionError]  # cut off, not answered after 30 s
    assert server_threads(server.port) == []


def raw_request(server, body):
    """Send one POST over a bare socket (so the test can hang up whenever it likes)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


@pytest.mark.parametrize("when", ["mid_stream", "before_the_response"])
def test_survives_clients_that_hang_up(caplog, when):
    with FakeLlmServer(stream_delay_seconds=0.02) as server:
        if when == "before_the_response":
            server.delay_next(0.1)
        sock = raw_request(server, chat_body("a b c d e f g h i j k l m n o p", stream=True))
        if when == "mid_stream":
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        server.wait_for_requests(1)
        sock.close()  # hang up while the server is still writing (or about to)
        # the handler notices the closed socket and ends quietly; the server keeps serving
        assert wait_until(lambda: len(server_threads(server.port)) == 1)
        assert post_chat(server).status_code == 200
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_config_points_at_the_server_with_fast_settings(server):
    config = server.config(min_interval_seconds=0.05, max_attempts=2, temperature=0.3)
    assert isinstance(config, LlmConfig)
    assert config.model.base_url == server.base_url and config.model.api_key == KEY
    assert config.model.model_name == "fake-model" and config.model.temperature == 0.3
    assert config.rate_limit.min_interval_seconds == 0.05
    assert config.rate_limit.key == f"fake-llm-{server.port}"
    assert config.retry.max_attempts == 2 and config.retry.initial_wait_seconds < 0.1
    assert server.config(retry=RetryConfig(max_attempts=7)).retry.max_attempts == 7
    with pytest.raises(TypeError, match="min_interval"):
        server.config(min_intervall=1)
    with pytest.raises(TypeError, match="not both"):
        server.config(retry=RetryConfig(), max_attempts=2)


def test_env_round_trips_through_load_config(server, monkeypatch):
    from cowork_llm.config import load_config

    env = server.env(min_interval_seconds=0.25, provider="anthropic")
    assert env["COWORK_LLM_BASE_URL"] == server.base_url and env["COWORK_LLM_API_KEY"] == KEY
    assert env["COWORK_LLM_RATE_LIMIT_MIN_INTERVAL_SECONDS"] == "0.25"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = load_config()
    expected = server.config(min_interval_seconds=0.25, provider="anthropic")
    assert (loaded.model, loaded.rate_limit, loaded.retry) == (
        expected.model, expected.rate_limit, expected.retry)


def test_end_to_end_through_create_llm_client(server):
    from cowork_llm import create_llm_client

    server.fail_next(503)
    llm = create_llm_client(server.config())
    try:
        result = llm.chat([{"role": "user", "content": "hi"}])
    finally:
        llm.close()
    assert result.content == "echo: hi" and result.usage is not None
    assert [r.path for r in server.requests] == [server.CHAT_PATH] * 2
