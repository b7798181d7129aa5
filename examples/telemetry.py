"""Telemetry: watch calls, retries and limiter waits as OpenTelemetry spans and metrics.

    pip install 'cowork-llm[otel]' opentelemetry-sdk
    python examples/telemetry.py

It starts the built-in FakeLlmServer, sets up the OpenTelemetry SDK with its console
exporters (in your service: an OTLP exporter to your collector instead), and makes three
calls from two threads through one client limited to one request every 0.5 s:

- the server answers the first request with a 503: that call's span has two
  ``cowork_llm.attempt`` events, the first with the status and the wait before the retry;
- the two threads ask at once: the one that waited for the limiter has
  ``cowork_llm.limiter.wait`` and ``cowork_llm.limiter.queue_position`` on its span.

Each span is printed as JSON when it ends, then the metrics (token usage, operation
duration, limiter waits) once at the end. Nothing else is needed: any client made by
``create_llm_client`` reports to the global tracer and meter providers once the API is
installed. Prompts and answers are not recorded unless
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
"""

import threading

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from cowork_llm import create_llm_client
from cowork_llm.testing import FakeLlmServer


def set_up_opentelemetry() -> MeterProvider:
    """What an application does once at start-up (here: print everything to stdout)."""
    resource = Resource.create({"service.name": "telemetry-example"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    # Exported when the provider shuts down (a service would export every minute).
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return meter_provider


def main() -> None:
    meter_provider = set_up_opentelemetry()
    with FakeLlmServer() as server:
        server.fail_next(503, retry_after=0.2)  # the first request fails once: a retry
        config = server.config(min_interval_seconds=0.5, key="telemetry-example")
        with create_llm_client(config) as llm:
            print("answer:", llm.generate_content("Name a colour, in one word."))
            # Two threads at once: the second waits about 0.5 s for the limiter.
            threads = [threading.Thread(target=llm.generate_content, args=(prompt,))
                       for prompt in ("Name a fruit.", "Name a river.")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]
    meter_provider.shutdown()  # prints the metrics


if __name__ == "__main__":
    main()
