"""gen_ai.client.* histograms with the conventions' buckets, and the names we emit
checked against the opentelemetry-semantic-conventions package."""

import pytest

from cowork_llm import create_llm_client
from cowork_llm.telemetry import _semconv as sc
from cowork_llm.testing import FakeLlmServer

semconv = pytest.importorskip("opentelemetry.semconv._incubating.attributes.gen_ai_attributes")


def test_token_usage_and_duration_histograms(otel):
    with FakeLlmServer() as server:
        with create_llm_client(server.config(), observers=[otel.observer()]) as llm:
            results = [llm.chat([{"role": "user", "content": "word " * n}]) for n in (1, 40)]
    found = otel.metrics()
    usage = {dict(p.attributes)["gen_ai.token.type"]: p for p in found["gen_ai.client.token.usage"]}
    assert usage["input"].sum == sum(r.usage.prompt_tokens for r in results)
    assert usage["output"].sum == sum(r.usage.completion_tokens for r in results)
    assert usage["input"].count == 2
    assert tuple(usage["input"].explicit_bounds) == sc.TOKEN_BUCKETS
    attributes = dict(usage["input"].attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "fake-model"
    assert attributes["gen_ai.response.model"] == results[0].model
    assert "gen_ai.system" not in attributes  # metrics carry the current names only
    (duration,) = found["gen_ai.client.operation.duration"]
    assert duration.count == 2 and tuple(duration.explicit_bounds) == sc.DURATION_BUCKETS
    assert 0 < duration.sum < 20
    assert "error.type" not in dict(duration.attributes)


def test_the_buckets_are_the_ones_the_conventions_advise():
    # From the GenAI metrics conventions (gen_ai.client.token.usage and
    # gen_ai.client.operation.duration, "ExplicitBucketBoundaries" advice).
    assert sc.TOKEN_BUCKETS == tuple(4 ** i for i in range(14))
    assert sc.DURATION_BUCKETS == tuple(round(0.01 * 2 ** i, 2) for i in range(14))


def test_every_genai_name_we_emit_is_in_the_semconv_package():
    from opentelemetry.semconv._incubating.attributes import error_attributes, server_attributes
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

    shipped = {value for module in (semconv, server_attributes, error_attributes, gen_ai_metrics)
               for name, value in vars(module).items() if name.isupper() and isinstance(value, str)}
    from opentelemetry.semconv.attributes import http_attributes

    shipped |= {v for n, v in vars(http_attributes).items() if n.isupper() and isinstance(v, str)}
    ours = {value for name, value in vars(sc).items()
            if name.isupper() and isinstance(value, str) and "." in value
            and not value.startswith(("cowork_llm.", "https://"))}
    ours |= set(sc.REQUEST_OPTIONS.values())
    assert ours - shipped == set()


def test_the_schema_url_is_one_the_package_knows():
    from opentelemetry.semconv.schemas import Schemas

    assert sc.SCHEMA_URL in {s.value for s in Schemas}


@pytest.mark.parametrize(("environ", "latest", "capture"), [
    ({}, False, False),
    ({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}, False, True),
    ({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}, False, False),
    ({"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
      "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}, True, True),
    ({"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
      "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "NO_CONTENT"}, True, False),
    ({"OTEL_SEMCONV_STABILITY_OPT_IN": "http"}, False, False),
])
def test_environment_switches(environ, latest, capture):
    assert sc.latest_only(environ) is latest
    assert sc.capture_content_from_env(environ) is capture


def test_the_learned_limits_are_gauges(otel):
    from cowork_llm.testing import Quota

    with FakeLlmServer(quota=Quota(requests_per_minute=600, tokens_per_minute=100_000)) as server:
        config = server.config()
        with create_llm_client(config, observers=[otel.observer()]) as llm:
            for _ in range(3):
                llm.chat([{"role": "user", "content": "hi"}])
            found = otel.metrics()
            learned = llm.limits().learned
    key = config.rate_limit.key

    def by_dimension(metric):
        return {dict(p.attributes)["cowork_llm.limiter.dimension"]: p.value for p in found[metric]
                if dict(p.attributes)["cowork_llm.limiter.key"] == key}

    limits = by_dimension("cowork_llm.limiter.learned_limit")
    assert limits == {"requests": 600, "tokens": 100_000}
    remaining = by_dimension("cowork_llm.limiter.remaining")
    assert set(remaining) == {"requests", "tokens"}
    assert 590 <= remaining["requests"] <= 600 and remaining["requests"] == pytest.approx(
        learned["requests"].level, abs=2)
