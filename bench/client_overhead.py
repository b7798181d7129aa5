"""Client-side cost per call: cowork_llm vs a bare requests.Session loop vs the official
openai SDK, against one FakeLlmServer with the limiter opened up (min_interval_seconds=0).

The server runs in a separate process so its CPU is not counted; client CPU is this
process's CPU time (time.process_time: every thread of ours, pyrate's included). The
three clients run in interleaved rounds, so drift on a noisy machine hits all alike;
the figure reported is the median over rounds.

    .venv/bin/python bench/client_overhead.py [--calls 300] [--rounds 7]

The openai SDK is optional (``pip install openai``); without it that column is skipped.

``--telemetry`` compares cowork_llm without observers, with the OpenTelemetry API and no
SDK configured (the no-op tracer and meter), and with the real SDK configured (a
TracerProvider with a BatchSpanProcessor feeding an exporter that drops the spans, and a
MeterProvider with a reader), instead of the openai SDK.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

KEY = "sk-bench-0123456789abcdef"
MODEL = "fake-model"
SERVER = (
    "import sys\n"
    "from cowork_llm.testing import FakeLlmServer\n"
    f"s = FakeLlmServer(api_key={KEY!r}).start()\n"
    "print(s.base_url, flush=True)\n"
    "sys.stdin.read()\n"
    "s.stop()\n"
)
MESSAGES = [{"role": "user", "content": "Say something short."}]


def start_server() -> Tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def cowork_client(base_url: str, observers: Optional[Sequence[Any]] = ()) -> Callable[[], str]:
    from cowork_llm import create_llm_client
    from cowork_llm.config import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig

    llm = create_llm_client(LlmConfig(
        model=ModelConfig(base_url=base_url, api_key=KEY, model_name=MODEL),
        rate_limit=RateLimitConfig(min_interval_seconds=0.0, key="bench"),
        retry=RetryConfig(),
    ), observers=observers)
    return lambda: llm.chat(MESSAGES).content


def otel_sdk_observer() -> Any:
    """An observer on a real SDK: spans batched to an exporter that drops them, metrics
    aggregated for a reader (as a service exporting every minute would)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from cowork_llm.telemetry import OpenTelemetryObserver

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return OpenTelemetryObserver(tracer_provider=tracer_provider,
                                 meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))


def requests_client(base_url: str) -> Callable[[], str]:
    import requests

    session = requests.Session()
    url = base_url + "/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}

    def call() -> str:
        response = session.post(url, json={"model": MODEL, "messages": MESSAGES}, headers=headers,
                                timeout=(10, 60))
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    return call


def openai_client(base_url: str) -> Callable[[], str]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
    return lambda: str(client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
                       .choices[0].message.content)


def measure(call: Callable[[], str], calls: int) -> Tuple[float, float]:
    """(wall ms per call, client CPU ms per call)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        call()
    return ((time.perf_counter() - wall) * 1000 / calls, (time.process_time() - cpu) * 1000 / calls)


def wrapper_microseconds(observers: Sequence[Any], calls: int = 20000, repeats: int = 5) -> float:
    """RateLimitedLlm.chat over an inner Llm that answers at once: the wrapper's own cost,
    best of ``repeats`` runs (no network, so the difference between observer sets shows)."""
    from cowork_llm.client import RateLimitedLlm
    from cowork_llm.config import RateLimitConfig, RetryConfig
    from cowork_llm.llm import Llm
    from cowork_llm.rate_limiter import RateLimiter
    from cowork_llm.results import ChatResult, Usage
    from cowork_llm.retry import RetryPolicy

    answer = ChatResult(content="ok", model=MODEL, finish_reason="stop", usage=Usage.of(5, 1))

    class Instant(Llm):
        name = "instant"

        def send(self, messages: Any, options: Any) -> ChatResult:
            return answer

    limiter = RateLimiter(RateLimitConfig(min_interval_seconds=0.0, key="wrapper"))
    llm = RateLimitedLlm(Instant(), limiter, RetryPolicy(RetryConfig()), observers=observers)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            llm.chat(MESSAGES)
        best = min(best, (time.perf_counter() - started) * 1e6 / calls)
    limiter.close()
    return best


def print_wrapper_costs() -> None:
    from cowork_llm.telemetry import OpenTelemetryObserver

    for name, observers in (("no observers", ()), ("OTel API, no SDK", [OpenTelemetryObserver()]),
                            ("OTel SDK configured", [otel_sdk_observer()])):
        print(f"wrapper alone over an instant Llm, {name}: "
              f"{wrapper_microseconds(observers):.1f} us/call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--telemetry", action="store_true",
                        help="cowork_llm without observers, with the OpenTelemetry API only, "
                             "and with the SDK configured")
    parser.add_argument("--wrapper-only", action="store_true",
                        help="only the wrapper's cost per call over an instant Llm, with and "
                             "without OpenTelemetry (no server, no network)")
    args = parser.parse_args()
    if args.wrapper_only:
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of 5 runs x 20000 calls")
        print_wrapper_costs()
        return
    server, base_url = start_server()
    try:
        clients: Dict[str, Callable[[], str]] = {
            "requests (bare Session)": requests_client(base_url),
            "cowork_llm": cowork_client(base_url),
        }
        if args.telemetry:
            from cowork_llm.telemetry import OpenTelemetryObserver

            clients["cowork_llm + OTel API"] = cowork_client(base_url, [OpenTelemetryObserver()])
            clients["cowork_llm + OTel SDK"] = cowork_client(base_url, [otel_sdk_observer()])
        else:
            try:
                clients["openai SDK"] = openai_client(base_url)
            except ImportError:
                print("openai is not installed: skipping it (pip install openai)")
        for call in clients.values():  # warm up: connections, imports, caches
            for _ in range(30):
                assert call() == "echo: Say something short."
        results: Dict[str, List[Tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, call in clients.items():
                results[name].append(measure(call, args.calls))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)

    base_wall = statistics.median(w for w, _ in results["requests (bare Session)"])
    base_cpu = statistics.median(c for _, c in results["requests (bare Session)"])
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.rounds} rounds x "
          f"{args.calls} calls per client; medians over rounds")
    print(f"| {'client':<24} | wall ms/call | CPU ms/call | wall vs requests | CPU vs requests |")
    print(f"|{'-' * 26}|{'-' * 14}|{'-' * 13}|{'-' * 18}|{'-' * 17}|")
    for name, samples in results.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        ratios = f"{wall / base_wall:15.2f}x | {cpu / base_cpu:14.2f}x"
        print(f"| {name:<24} | {wall:12.3f} | {cpu:11.3f} | {ratios} |")
    if args.telemetry:
        print_wrapper_costs()
    base = results["requests (bare Session)"]
    for name, samples in results.items():  # the spread: each round against the same round's requests
        if samples is base:
            continue
        walls = sorted(w / b[0] for (w, _), b in zip(samples, base, strict=True))
        cpus = sorted(c / b[1] for (_, c), b in zip(samples, base, strict=True))
        print(f"{name}: per-round ratio vs requests, wall {walls[0]:.2f}-{walls[-1]:.2f}x, "
              f"CPU {cpus[0]:.2f}-{cpus[-1]:.2f}x")


if __name__ == "__main__":
    main()
