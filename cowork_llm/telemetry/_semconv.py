"""The names we emit: OpenTelemetry's GenAI semantic conventions as shipped by
``opentelemetry-semantic-conventions`` 0.66b2 (schema 1.44.0, the last release carrying the
GenAI names before they moved to their own repository), plus our own ``cowork_llm.*``
attributes, and the two environment switches the conventions define.

Copied as plain strings, not imported: the ``otel`` extra is ``opentelemetry-api`` only.
``tests/telemetry/test_semconv.py`` checks every name against the package.

- ``OTEL_SEMCONV_STABILITY_OPT_IN``: the GenAI conventions say an instrumentation keeps
  emitting the version it used before unless the list holds ``gen_ai_latest_experimental``,
  which means "the latest experimental conventions only, not the old ones". We emit the
  latest names either way (this is our first release, there is no older output to keep),
  and without the opt-in also the pre-1.37 ``gen_ai.system`` next to
  ``gen_ai.provider.name``, so dashboards written against v1.36 and older keep working;
  the opt-in drops it.
- ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``: prompts and answers are recorded
  (as ``gen_ai.input.messages`` / ``gen_ai.output.messages`` span attributes) only when it
  is ``true`` (or, under the opt-in, ``SPAN_ONLY`` / ``SPAN_AND_EVENT``). Off by default.
"""

import os
from typing import Mapping, Optional

__all__ = ["SCHEMA_URL", "latest_only", "capture_content_from_env"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.44.0"

OPT_IN_VARIABLE = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST_EXPERIMENTAL = "gen_ai_latest_experimental"
CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# --- GenAI attributes -------------------------------------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # deprecated by gen_ai.provider.name; emitted unless opted in
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
REQUEST_SEED = "gen_ai.request.seed"
REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
HTTP_STATUS = "http.response.status_code"

#: our call options by their short names → the GenAI request attribute
REQUEST_OPTIONS: Mapping[str, str] = {
    "max_tokens": REQUEST_MAX_TOKENS,
    "temperature": REQUEST_TEMPERATURE,
    "top_p": REQUEST_TOP_P,
    "seed": REQUEST_SEED,
    "stop": REQUEST_STOP_SEQUENCES,
    "dimensions": EMBEDDINGS_DIMENSION_COUNT,
}

# --- GenAI metrics (names, units and the buckets the conventions advise) -----------------
TOKEN_USAGE = "gen_ai.client.token.usage"
OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)

# --- ours -------------------------------------------------------------------------------
LIMITER_KEY = "cowork_llm.limiter.key"
LIMITER_WAIT = "cowork_llm.limiter.wait"  #: seconds waited for limiter slots (span: all attempts)
QUEUE_POSITION = "cowork_llm.limiter.queue_position"  #: callers ahead on arrival
CACHE_HIT = "cowork_llm.cache.hit"
ATTEMPTS = "cowork_llm.attempts"
ATTEMPT_EVENT = "cowork_llm.attempt"
ATTEMPT_NUMBER = "cowork_llm.attempt.number"
ATTEMPT_STATUS = "cowork_llm.attempt.status"  #: "ok" or "error"
RETRY_WAIT = "cowork_llm.retry.wait"  #: seconds before the next attempt

LIMITER_WAIT_METRIC = "cowork_llm.limiter.wait"
QUEUE_DEPTH_METRIC = "cowork_llm.limiter.queue_depth"
IN_FLIGHT_METRIC = "cowork_llm.limiter.in_flight"
#: learned from the provider's rate-limit headers (adaptive limits), per dimension
REMAINING_METRIC = "cowork_llm.limiter.remaining"
LEARNED_LIMIT_METRIC = "cowork_llm.limiter.learned_limit"
LIMITER_DIMENSION = "cowork_llm.limiter.dimension"  #: requests, tokens, input_tokens, output_tokens
# Limiter waits are short when all is well and long when not: finer at the low end.
LIMITER_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0, 120.0)


def _opt_ins(environ: Mapping[str, str]) -> set:
    return {part.strip().lower() for part in environ.get(OPT_IN_VARIABLE, "").split(",")}


def latest_only(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when OTEL_SEMCONV_STABILITY_OPT_IN lists gen_ai_latest_experimental."""
    return LATEST_EXPERIMENTAL in _opt_ins(os.environ if environ is None else environ)


def capture_content_from_env(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT lets prompts and answers
    onto spans. Never raises: an unknown value means no."""
    env = os.environ if environ is None else environ
    value = env.get(CAPTURE_VARIABLE, "").strip().lower()
    if latest_only(env):
        return value in ("span_only", "span_and_event", "true")
    return value == "true"
