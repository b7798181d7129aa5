"""How exactly does the limiter keep its interval, measured at the server?

Scenarios, all against one FakeLlmServer (each answer takes --latency seconds):

  memory     16 threads sharing one client from create_llm_client (backend memory)
  sqlite     4 processes, each with its own client, backend sqlite (one file)
  redis      4 processes, each with its own client, backend redis (a redis-server
             started for the run)
  original   16 threads, the seed's design: under one lock, sleep the interval, then call
  pyrate     16 threads, pyrate-limiter bare: Limiter(Rate(1, interval)).try_acquire()
             (blocking, default buffer_ms), then call; no FIFO gate

For each: requests, violations (start-to-start gaps at the server below the interval),
the smallest gap, utilisation (achieved rate / allowed rate, over the whole run) and
the wait per request (from calling to arriving at the server) p50 / p99 / max, next to
the bound "requests queued x (interval + margin)" (16 threads, or 4 processes).
For sqlite and redis also what the shared ticket queue costs: the CPU time of the 4
worker processes over the run (start-up included) and the time of one ask by a process
that is not at the front of the queue (what each waiting process does every 20 ms).

    .venv/bin/python bench/limiter_accuracy.py                   # 2 s, 32 requests each
    .venv/bin/python bench/limiter_accuracy.py --interval 0.5 --requests 40 --only memory
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Callable, Dict, List, Tuple

from pyrate_limiter import Limiter, Rate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from _redis_server import redis_server  # noqa: E402

from cowork_llm import create_llm_client
from cowork_llm.config import RateLimitConfig
from cowork_llm.providers import build_provider
from cowork_llm.rate_limiter._rates import admission_rates
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.rate_limiter.backends import build_backend
from cowork_llm.testing import FakeLlmServer

THREADS = 16
PROCESSES = 4

WORKER = """
import sys, time, uuid
from cowork_llm import create_llm_client

client = create_llm_client()
for i in range(int(sys.argv[1])):
    tag = uuid.uuid4().hex
    print(tag, time.monotonic(), flush=True)
    client.chat([{"role": "user", "content": tag}])
"""

Starts = List[Tuple[str, float]]  # (tag, time.monotonic() when the call was made)


def run_threads(count: int, call: Callable[[str], None]) -> Starts:
    starts: Starts = []
    lock = threading.Lock()
    per_thread = [count // THREADS + (1 if n < count % THREADS else 0) for n in range(THREADS)]

    def worker(calls: int) -> None:
        for _ in range(calls):
            tag = uuid.uuid4().hex
            with lock:
                starts.append((tag, time.monotonic()))
            call(tag)

    threads = [threading.Thread(target=worker, args=(n,)) for n in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return starts


def run_processes(server: FakeLlmServer, count: int, settings: Dict[str, object], interval: float) -> Starts:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    env.update(server.env(min_interval_seconds=interval, key="bench", **settings))
    per_process = [count // PROCESSES + (1 if n < count % PROCESSES else 0) for n in range(PROCESSES)]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(n)], env=env, stdout=subprocess.PIPE)
               for n in per_process]
    starts: Starts = []
    for worker in workers:
        out, _ = worker.communicate()
        if worker.returncode != 0:
            raise SystemExit(f"a worker failed with exit code {worker.returncode}")
        for line in out.decode().split("\n"):
            if line.strip():
                tag, started = line.split()
                starts.append((tag, float(started)))
    return starts


def scenario(name: str, server: FakeLlmServer, count: int, interval: float) -> Starts:
    message = lambda tag: [{"role": "user", "content": tag}]  # noqa: E731
    if name == "memory":
        client = create_llm_client(server.config(min_interval_seconds=interval, key="bench-memory"))
        return run_threads(count, lambda tag: client.chat(message(tag)))
    if name in ("sqlite", "redis"):
        raise AssertionError("processes are started by main()")
    provider = build_provider(server.config().model)
    if name == "original":
        lock = threading.Lock()

        def original(tag: str) -> None:
            with lock:  # the seed: hold the semaphore, sleep, call
                time.sleep(interval)
                provider.chat(message(tag))

        return run_threads(count, original)
    if name == "pyrate":
        limiter = Limiter(Rate(1, int(interval * 1000)))

        def bare(tag: str) -> None:
            limiter.try_acquire("bench")
            provider.chat(message(tag))

        try:
            return run_threads(count, bare)
        finally:
            limiter.close()
    raise SystemExit(f"unknown scenario {name!r}")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def poll_cost_ms(settings: Dict[str, object], asks: int = 2000) -> float:
    """Mean time of one ask by a member queued behind another member's front ticket."""
    config = RateLimitConfig(min_interval_seconds=60, key="bench-poll", **settings)  # type: ignore[arg-type]
    front, behind = build_backend(config), build_backend(config)
    try:
        front.try_acquire()  # admitted: the bucket is busy for a minute
        front.try_acquire()  # takes the front ticket
        began = time.perf_counter()
        for _ in range(asks):
            behind.try_acquire()
        return (time.perf_counter() - began) / asks * 1000
    finally:
        front.close()
        behind.close()


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(server: FakeLlmServer, starts: Starts, interval: float, queue: int) -> Dict[str, object]:
    arrival = {r.messages[-1]["content"]: r.arrival_monotonic for r in server.chat_requests}
    times = sorted(arrival.values())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    waits = [arrival[tag] - started for tag, started in starts]
    return {
        "requests": len(times),
        "violations": sum(1 for gap in gaps if gap < interval),
        "min_gap_s": round(min(gaps), 4),
        "utilisation_pct": round(100 * (len(times) - 1) * interval / (times[-1] - times[0]), 2),
        "wait_p50_s": round(percentile(waits, 0.5), 2),
        "wait_p99_s": round(percentile(waits, 0.99), 2),
        "wait_max_s": round(max(waits), 2),
        # Everyone queued ahead of a request starts first, each the padded interval apart.
        "bound_s": round(queue * admission_rates(RateLimitConfig(min_interval_seconds=interval))[0].interval
                         / 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=2.0, help="min_interval_seconds (default 2)")
    parser.add_argument("--requests", type=int, default=32, help="requests per scenario (default 32)")
    parser.add_argument("--latency", type=float, default=0.25, help="server latency in seconds")
    parser.add_argument("--only", nargs="*", default=["memory", "sqlite", "redis", "original", "pyrate"])
    args = parser.parse_args()
    results = {}
    for name in args.only:
        with FakeLlmServer(latency_seconds=args.latency) as server:
            began = time.monotonic()
            cpu_before = children_cpu_seconds()
            extra: Dict[str, object] = {}
            if name == "sqlite":
                with tempfile.TemporaryDirectory() as folder:
                    path = os.path.join(folder, "q.sqlite")
                    settings: Dict[str, object] = {"backend": "sqlite", "path": path}
                    starts = run_processes(server, args.requests, settings, args.interval)
                    extra["workers_cpu_s"] = round(children_cpu_seconds() - cpu_before, 2)
                    extra["poll_ms"] = round(poll_cost_ms(settings), 3)
            elif name == "redis":
                with redis_server() as url:
                    settings = {"backend": "redis", "redis_url": url}
                    starts = run_processes(server, args.requests, settings, args.interval)
                    extra["workers_cpu_s"] = round(children_cpu_seconds() - cpu_before, 2)
                    extra["poll_ms"] = round(poll_cost_ms(settings), 3)
            else:
                starts = scenario(name, server, args.requests, args.interval)
                _reset_global_rate_limiters()
            queue = PROCESSES if name in ("sqlite", "redis") else THREADS
            results[name] = measure(server, starts, args.interval, queue)
            results[name].update(extra, run_s=round(time.monotonic() - began, 1))
            print(name, json.dumps(results[name]), flush=True)
    print()
    columns = ["requests", "violations", "min_gap_s", "utilisation_pct", "wait_p50_s", "wait_p99_s",
               "wait_max_s", "bound_s"]
    print("| scenario | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
