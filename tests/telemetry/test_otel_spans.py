"""One CLIENT span per call with the GenAI attributes, an event per attempt, our own
cowork_llm.* attributes: checked with the real SDK against a FakeLlmServer."""

import json
import threading

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from cowork_llm import create_llm_client
from cowork_llm.config import CacheConfig
from cowork_llm.errors import BadRequestError, ServerError
from cowork_llm.rate_limiter import get_global_rate_limiter
from cowork_llm.testing import FakeLlmServer

KEY = "sk-telemetry-secret-0123456789"
HI = [{"role": "user", "content": "hello there"}]


def _events(span):
    return [dict(e.attributes) for e in span.events if e.name == "cowork_llm.attempt"]


def test_a_call_is_one_client_span_with_the_genai_attributes(otel):
    with FakeLlmServer(api_key=KEY) as server:
        config = server.config(max_tokens=50, temperature=0.3)
        with create_llm_client(config, observers=[otel.observer()]) as llm:
            result = llm.chat(HI)
    (span,) = otel.finished()
    a = span.attributes
    assert span.name == "chat fake-model" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "fake-model"
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.response.model"] == result.model
    assert a["gen_ai.response.id"] == result.raw["id"]
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert a["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == server.port
    assert a["cowork_llm.cache.hit"] is False and a["cowork_llm.attempts"] == 1
    assert a["cowork_llm.limiter.key"] == config.rate_limit.key
    assert "error.type" not in a and span.status.status_code is not StatusCode.ERROR
    assert "gen_ai.request.stop_sequences" not in a and "gen_ai.request.seed" not in a
    (event,) = _events(span)
    assert event["cowork_llm.attempt.number"] == 1 and event["cowork_llm.attempt.status"] == "ok"


def test_the_request_options_are_on_the_span(otel):
    with FakeLlmServer() as server:
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            llm.chat(HI, top_p=0.5, seed=7, stop=["END", "STOP"], temperature=0.1, max_tokens=9)
    (span,) = otel.finished()
    a = span.attributes
    assert (a["gen_ai.request.top_p"], a["gen_ai.request.seed"]) == (0.5, 7)
    assert tuple(a["gen_ai.request.stop_sequences"]) == ("END", "STOP")
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.max_tokens"]) == (0.1, 9)


def test_each_attempt_is_an_event_with_its_status_and_the_wait_before_the_retry(otel):
    with FakeLlmServer() as server:
        server.fail_next(503, retry_after=0.2)
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            llm.chat(HI)
    (span,) = otel.finished()
    first, second = _events(span)
    assert first["cowork_llm.attempt.status"] == "error" and first["error.type"] == "ServerError"
    assert first["http.response.status_code"] == 503 and first["cowork_llm.retry.wait"] == 0.2
    assert second["cowork_llm.attempt.number"] == 2 and second["cowork_llm.attempt.status"] == "ok"
    assert "cowork_llm.retry.wait" not in second
    assert span.attributes["cowork_llm.attempts"] == 2


def test_a_failed_call_has_error_type_and_an_error_status(otel):
    with FakeLlmServer() as server:
        server.fail_next(400)
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            with pytest.raises(BadRequestError):
                llm.chat(HI)
    (span,) = otel.finished()
    assert span.attributes["error.type"] == "BadRequestError"
    assert span.status.status_code is StatusCode.ERROR
    (event,) = _events(span)
    assert event["http.response.status_code"] == 400 and "cowork_llm.retry.wait" not in event
    durations = otel.metrics()["gen_ai.client.operation.duration"]
    assert [dict(p.attributes)["error.type"] for p in durations] == ["BadRequestError"]


def test_retries_exhausted_report_every_attempt(otel):
    with FakeLlmServer() as server:
        server.fail_next(500, times=3)
        with create_llm_client(server.config(max_attempts=3), observers=[otel.observer()]) as llm:
            with pytest.raises(ServerError):
                llm.chat(HI)
    (span,) = otel.finished()
    events = _events(span)
    assert [e["cowork_llm.attempt.number"] for e in events] == [1, 2, 3]
    assert all(e["cowork_llm.attempt.status"] == "error" for e in events)
    assert ["cowork_llm.retry.wait" in e for e in events] == [True, True, False]


def test_limiter_wait_and_queue_position_are_on_the_span(otel):
    with FakeLlmServer() as server:
        config = server.config(max_concurrent=1)
        with create_llm_client(config, observers=[otel.observer()]) as llm:
            limiter = get_global_rate_limiter(config.rate_limit.key)
            held = limiter.acquire()  # every call queues behind this slot
            threads = []
            for queued in (1, 2):
                threads.append(threading.Thread(target=llm.chat, args=(HI,)))
                threads[-1].start()
                assert limiter.wait_for_queued(queued, timeout=10)
            assert limiter.in_flight == 1
            in_flight = {dict(p.attributes)["cowork_llm.limiter.key"]: p.value
                         for p in otel.metrics()["cowork_llm.limiter.in_flight"]}
            queued = {dict(p.attributes)["cowork_llm.limiter.key"]: p.value
                      for p in otel.metrics()["cowork_llm.limiter.queue_depth"]}
            held.release()
            for thread in threads:
                thread.join(10)
    assert in_flight[config.rate_limit.key] == 1 and queued[config.rate_limit.key] == 2
    spans = sorted(otel.finished(), key=lambda s: s.attributes["cowork_llm.limiter.queue_position"])
    assert [s.attributes["cowork_llm.limiter.queue_position"] for s in spans] == [0, 1]
    assert all(s.attributes["cowork_llm.limiter.wait"] > 0 for s in spans)
    waits = otel.metrics()["cowork_llm.limiter.wait"]
    assert sum(p.count for p in waits) == 2


def test_a_cache_hit_is_marked_and_has_no_attempt(otel):
    with FakeLlmServer() as server:
        config = server.config(cache=CacheConfig(backend="memory"))
        with create_llm_client(config, observers=[otel.observer()]) as llm:
            llm.chat(HI)
            llm.chat(HI)
    first, second = otel.finished()
    assert first.attributes["cowork_llm.cache.hit"] is False
    assert second.attributes["cowork_llm.cache.hit"] is True and _events(second) == []
    assert server.request_count == 1


def test_a_stream_span_ends_when_the_stream_ends(otel):
    with FakeLlmServer() as server:
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            stream = llm.stream(HI)
            assert otel.finished() == []  # open while the answer is being read
            text = "".join(stream)
    (span,) = otel.finished()
    assert text and span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] > 0


def test_the_latest_experimental_opt_in_drops_gen_ai_system(otel, monkeypatch):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    with FakeLlmServer() as server:
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            llm.chat(HI)
    (span,) = otel.finished()
    assert "gen_ai.system" not in span.attributes
    assert span.attributes["gen_ai.provider.name"] == "openai"


def _everything_recorded(otel):
    parts = []
    for span in otel.finished():
        parts.append(span.to_json())
    parts.append(repr(otel.metrics()))
    return "\n".join(parts)


def test_prompts_and_answers_are_not_recorded_unless_asked_and_the_key_never(otel):
    with FakeLlmServer(api_key=KEY) as server:
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            llm.chat(HI)
    recorded = _everything_recorded(otel)
    assert "hello there" not in recorded and "gen_ai.input.messages" not in recorded
    assert KEY not in recorded


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_content_capture_records_the_messages_but_not_the_key(otel, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        observer = otel.observer()
    else:
        observer = otel.observer(capture_content=True)
    with FakeLlmServer(api_key=KEY) as server:
        with create_llm_client(server.config(), observers=[observer]) as llm:
            answer = llm.chat(HI).content
    (span,) = otel.finished()
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}]
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == answer
    assert KEY not in _everything_recorded(otel)


def test_many_threads_share_one_observer(otel):
    observer = otel.observer()
    with FakeLlmServer() as server:
        with create_llm_client(server.config(max_concurrent=4), observers=[observer]) as llm:
            def work(n):
                for i in range(15):
                    llm.chat([{"role": "user", "content": f"thread {n} call {i}"}])

            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
    spans = otel.finished()
    assert len(spans) == 120 and len({s.context.span_id for s in spans}) == 120
    assert all(s.attributes["cowork_llm.attempts"] == 1 and len(_events(s)) == 1 for s in spans)
    usage = otel.metrics()["gen_ai.client.token.usage"]
    assert sum(p.count for p in usage) == 240
    assert sum(p.count for p in otel.metrics()["gen_ai.client.operation.duration"]) == 120


def test_each_embeddings_request_is_a_span(otel):
    import dataclasses

    from cowork_llm.config import EmbeddingsConfig

    with FakeLlmServer() as server:
        server.fail_next(503, path="/v1/embeddings")
        config = dataclasses.replace(server.config(), embeddings=EmbeddingsConfig(
            model_name="emb-small", batch_size=2))
        with create_llm_client(config, observers=[otel.observer()]) as llm:
            result = llm.embed(["one", "two", "three"], dimensions=8)
    spans = otel.finished()
    assert [s.name for s in spans] == ["embeddings emb-small"] * 2  # two batches
    a = spans[0].attributes
    assert a["gen_ai.operation.name"] == "embeddings" and a["gen_ai.request.model"] == "emb-small"
    assert a["gen_ai.embeddings.dimension.count"] == 8
    assert a["cowork_llm.attempts"] == 2 and [e["cowork_llm.attempt.status"] for e in _events(spans[0])] \
        == ["error", "ok"]
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in spans) == result.usage.prompt_tokens
    assert "gen_ai.usage.output_tokens" not in a
    usage = otel.metrics()["gen_ai.client.token.usage"]
    assert {dict(p.attributes)["gen_ai.token.type"] for p in usage} == {"input"}


def test_spans_made_during_the_call_nest_under_it(otel):
    from cowork_llm.client import RateLimitedLlm
    from cowork_llm.rate_limiter import RateLimiter
    from cowork_llm.testing import MockLlm

    tracer = otel.tracer_provider.get_tracer("inner")

    def reply(messages):
        with tracer.start_as_current_span("HTTP POST"):  # as requests' instrumentation would
            return "ok"

    limiter = RateLimiter()
    llm = RateLimitedLlm(MockLlm(reply), limiter, observers=[otel.observer()])
    llm.chat(HI)
    limiter.close()
    inner, outer = otel.finished()
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert outer.name == "chat mock-model"


def test_each_tool_run_by_run_tools_is_an_execute_tool_span(otel):
    from cowork_llm.client import RateLimitedLlm
    from cowork_llm.rate_limiter import RateLimiter
    from cowork_llm.testing import MockLlm, tool_call

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    def broken(city: str) -> str:
        """Always fails."""
        raise OSError("disk full")

    limiter = RateLimiter()
    script = [tool_call("get_weather", city="Oslo"), tool_call("broken", city="Oslo"), "Done."]
    llm = RateLimitedLlm(MockLlm(script), limiter, observers=[otel.observer()])
    assert llm.run_tools(HI, [get_weather, broken]).content == "Done."
    limiter.close()
    spans = otel.finished()
    tools = [s for s in spans if s.attributes["gen_ai.operation.name"] == "execute_tool"]
    assert [s.name for s in tools] == ["execute_tool get_weather", "execute_tool broken"]
    ok, failed = tools
    assert ok.attributes["gen_ai.tool.name"] == "get_weather" and ok.attributes["gen_ai.tool.call.id"]
    assert "error.type" not in ok.attributes
    assert failed.attributes["error.type"] == "ToolCallFailed"
    assert failed.status.status_code is StatusCode.ERROR
    assert len([s for s in spans if s.name == "chat mock-model"]) == 3
    durations = otel.metrics()["gen_ai.client.operation.duration"]  # model calls only
    assert sum(p.count for p in durations) == 3
