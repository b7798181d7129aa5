"""The real OpenTelemetry SDK with its in-memory span exporter and metric reader."""

from dataclasses import dataclass
from typing import Any, Dict, List

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test extra (opentelemetry-sdk)")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402


@dataclass
class Otel:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def observer(self, **kwargs: Any) -> Any:
        from cowork_llm.telemetry import OpenTelemetryObserver

        return OpenTelemetryObserver(tracer_provider=self.tracer_provider,
                                     meter_provider=self.meter_provider, **kwargs)

    def finished(self) -> List[Any]:
        return list(self.spans.get_finished_spans())

    def metrics(self) -> Dict[str, Any]:
        """Metric name → its data points (one collection)."""
        data = self.reader.get_metrics_data()
        found: Dict[str, Any] = {}
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found


@pytest.fixture
def otel(monkeypatch):
    for name in ("OTEL_SEMCONV_STABILITY_OPT_IN", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"):
        monkeypatch.delenv(name, raising=False)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()
