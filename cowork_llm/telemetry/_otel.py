"""OpenTelemetry for every call: one CLIENT span named ``{operation} {model}`` with the
GenAI attributes, an event per attempt, and the GenAI client metrics (:mod:`._otel_metrics`).

Needs ``opentelemetry-api`` (extra ``otel``); the SDK and exporters are the application's.
Without a configured SDK the API's no-op tracer and meter make this cheap (measured in
BENCHMARKS.md). The key is never recorded; prompts and answers only when content capture
is on (:mod:`._semconv`).
"""

import json
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._version import __version__
from . import _semconv as sc
from ._observer import CallInfo, CallObservation, Observer
from ._otel_metrics import Instruments

__all__ = ["OpenTelemetryObserver"]

_SCOPE = "cowork_llm"


class OpenTelemetryObserver(Observer):
    """Spans and metrics for each call, through ``tracer_provider`` / ``meter_provider``
    (the global ones, set by the application, when None). ``capture_content`` records
    prompts and answers on the span (default: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT).
    Safe to share between threads and clients."""

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None,
                 capture_content: Optional[bool] = None) -> None:
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider, schema_url=sc.SCHEMA_URL)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        self._instruments = Instruments(meter)
        self.capture_content = sc.capture_content_from_env() if capture_content is None else capture_content
        self.latest_only = sc.latest_only()

    def start_call(self, call: CallInfo) -> "_SpanObservation":
        attributes: Dict[str, Any] = {sc.OPERATION_NAME: call.operation}
        if call.provider:
            attributes[sc.PROVIDER_NAME] = call.provider
            if not self.latest_only:
                attributes[sc.SYSTEM] = call.provider
        tool = call.operation == "execute_tool"
        if tool:  # a tool run by run_tools: no model, no limiter, no GenAI client metrics
            attributes[sc.TOOL_NAME] = call.model
            attributes[sc.TOOL_TYPE] = "function"
            if call.options.get("tool_call_id"):
                attributes[sc.TOOL_CALL_ID] = call.options["tool_call_id"]
        else:
            attributes[sc.REQUEST_MODEL] = call.model
        if call.server_address:
            attributes[sc.SERVER_ADDRESS] = call.server_address
            if call.server_port:
                attributes[sc.SERVER_PORT] = call.server_port
        metric_attributes = dict(attributes)
        metric_attributes.pop(sc.SYSTEM, None)
        for option, value in call.options.items():
            name = sc.REQUEST_OPTIONS.get(option)
            if name is None or value is None:
                continue
            if isinstance(value, (list, tuple)):
                if value:  # no stop sequences: left out, not an empty list
                    attributes[name] = list(value)
            else:
                attributes[name] = value
        if call.stream:
            attributes[sc.REQUEST_STREAM] = True
        if call.limiter_key is not None and not tool:
            attributes[sc.LIMITER_KEY] = call.limiter_key
        if self.capture_content and call.messages:
            attributes[sc.INPUT_MESSAGES] = _input_messages(call.messages)
        span = self._tracer.start_span(f"{call.operation} {call.model}", kind=SpanKind.CLIENT,
                                       attributes=attributes)
        # A plain call runs in this thread from start to end: make the span current so
        # HTTP instrumentation nests under it. A stream ends wherever it is closed.
        # (Nothing to make current without an SDK: the API's no-op span has no context.)
        token = None if call.stream or not span.get_span_context().is_valid \
            else otel_context.attach(trace.set_span_in_context(span))
        return _SpanObservation(self, span, token, None if tool else metric_attributes,
                                call.limiter_key)


class _SpanObservation(CallObservation):
    __slots__ = ("_observer", "_span", "_token", "_metric_attributes", "_limiter", "_began", "_waited",
                 "_queue_position", "_pending", "_attempts", "_cache_hit")

    def __init__(self, observer: OpenTelemetryObserver, span: Any, token: Any,
                 metric_attributes: Optional[Dict[str, Any]], limiter_key: Optional[str]) -> None:
        self._observer = observer
        self._limiter = {sc.LIMITER_KEY: limiter_key} if limiter_key is not None else {}
        self._span = span
        self._token = token
        self._metric_attributes = metric_attributes  # None: record no GenAI client metrics
        self._began = time.monotonic()
        self._waited = 0.0
        self._queue_position: Optional[int] = None
        self._pending: Optional[Dict[str, Any]] = None  # the attempt not yet reported
        self._attempts = 0
        self._cache_hit = False

    def slot_granted(self, attempt: int, waited_seconds: float, queue_position: int) -> None:
        self._attempts = attempt
        self._waited += waited_seconds
        if self._queue_position is None:
            self._queue_position = queue_position
        self._pending = {sc.ATTEMPT_NUMBER: attempt, sc.LIMITER_WAIT: waited_seconds,
                         sc.QUEUE_POSITION: queue_position}
        self._observer._instruments.limiter_wait.record(waited_seconds, self._limiter)

    def attempt_failed(self, attempt: int, error: BaseException) -> None:
        self._attempts = attempt
        pending: Dict[str, Any] = self._pending if (
            self._pending is not None and self._pending[sc.ATTEMPT_NUMBER] == attempt) else {
            sc.ATTEMPT_NUMBER: attempt}
        pending[sc.ATTEMPT_STATUS] = "error"
        pending[sc.ERROR_TYPE] = type(error).__name__
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            pending[sc.HTTP_STATUS] = status
        self._pending = pending

    def retrying(self, attempt: int, error: BaseException, wait_seconds: float,
                 max_attempts: int) -> None:
        if self._pending is None or self._pending.get(sc.ATTEMPT_STATUS) != "error":
            self.attempt_failed(attempt, error)
        assert self._pending is not None
        self._pending[sc.RETRY_WAIT] = wait_seconds
        self._flush_attempt()

    def cache_hit(self) -> None:
        self._cache_hit = True

    def succeeded(self, result: Any) -> None:
        if self._pending is not None:
            self._pending.setdefault(sc.ATTEMPT_STATUS, "ok")
            self._flush_attempt()
        # A ChatResult, or another result (EmbeddingResult) with what it has of these.
        span = self._span
        metric_attributes = self._metric_attributes
        model = getattr(result, "model", None)
        usage = getattr(result, "usage", None)
        if model and metric_attributes is not None:
            metric_attributes[sc.RESPONSE_MODEL] = model
        if span.is_recording():
            attributes: Dict[str, Any] = self._own_attributes()
            if model:
                attributes[sc.RESPONSE_MODEL] = model
            response_id = _response_id(result)
            if response_id:
                attributes[sc.RESPONSE_ID] = response_id
            finish_reason = getattr(result, "finish_reason", None)
            if finish_reason:
                attributes[sc.RESPONSE_FINISH_REASONS] = [finish_reason]
            if usage is not None:
                attributes[sc.USAGE_INPUT_TOKENS] = usage.prompt_tokens
                if (metric_attributes or {}).get(sc.OPERATION_NAME) != "embeddings":
                    attributes[sc.USAGE_OUTPUT_TOKENS] = usage.completion_tokens
            content = getattr(result, "content", None)
            if self._observer.capture_content and isinstance(content, str) and content:
                attributes[sc.OUTPUT_MESSAGES] = _output_messages(content, finish_reason)
            span.set_attributes(attributes)
        self._end(metric_attributes, usage)

    def failed(self, error: BaseException) -> None:
        if self._pending is not None:
            if self._pending.get(sc.ATTEMPT_STATUS) is None:
                self.attempt_failed(self._pending[sc.ATTEMPT_NUMBER], error)
            self._flush_attempt()
        error_type = type(error).__name__
        span = self._span
        if span.is_recording():
            attributes = self._own_attributes()
            attributes[sc.ERROR_TYPE] = error_type
            span.set_attributes(attributes)
            # The class name only: an error's text may quote a server's body.
            span.set_status(Status(StatusCode.ERROR, error_type))
        self._end(None if self._metric_attributes is None
                  else {**self._metric_attributes, sc.ERROR_TYPE: error_type}, None)

    # --- helpers ------------------------------------------------------------------------

    def _own_attributes(self) -> Dict[str, Any]:
        attributes: Dict[str, Any] = {sc.CACHE_HIT: self._cache_hit, sc.ATTEMPTS: self._attempts,
                                      sc.LIMITER_WAIT: self._waited}
        if self._queue_position is not None:
            attributes[sc.QUEUE_POSITION] = self._queue_position
        return attributes

    def _flush_attempt(self) -> None:
        if self._pending is not None and self._span.is_recording():
            self._span.add_event(sc.ATTEMPT_EVENT, self._pending)
        self._pending = None

    def _end(self, metric_attributes: Optional[Mapping[str, Any]], usage: Any) -> None:
        if metric_attributes is not None:
            self._observer._instruments.record_call(dict(metric_attributes),
                                                    time.monotonic() - self._began, usage)
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        self._span.end()


def _response_id(result: Any) -> Optional[str]:
    raw = getattr(result, "raw", None) or {}
    value = raw.get("id") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and value else None


def _input_messages(messages: Sequence[Mapping[str, Any]]) -> str:
    """The conventions' JSON shape: [{"role", "parts": [{"type": "text", "content"}]}]."""
    shaped: List[Dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        parts = [{"type": "text", "content": content}] if isinstance(content, str) else \
            [{"type": "text", "content": json.dumps(content, default=str)}] if content else []
        shaped.append({"role": message.get("role"), "parts": parts})
    return json.dumps(shaped, ensure_ascii=False)


def _output_messages(content: str, finish_reason: Optional[str]) -> str:
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": content}],
                        "finish_reason": finish_reason or ""}], ensure_ascii=False)
