"""Running at the provider's quota: adaptive limits against the alternatives.

One workload (8 threads x 30 requests, a ~100-token prompt, max_tokens 200, an answer of
~100 tokens) against FakeLlmServer enforcing 120 requests and 40,000 tokens a minute as
continuously refilling buckets (cowork_llm.testing.Quota), each contender on a fresh
server:

  a-memory   cowork_llm, adaptive, min_interval_seconds = 0, max_concurrent = 8 (1 process)
  a-sqlite   the same, 4 processes x 2 threads sharing a sqlite limiter file
  a-redis    the same, 4 processes x 2 threads sharing a redis-server started for the run
  b-default  cowork_llm with the defaults (2 s interval, 1 in flight)
  c-retry    cowork_llm, interval 0, max_concurrent 8, adaptive = false (429s retried)
  d-sdk      the official SDK of the family (openai / anthropic), 8 threads, its own
             retries (max_retries = 2, its default)

Per contender: 429s received, failed calls, requests done, total time (first to last
arrival at the server: process start-up left out), and utilisation
of the binding quota: for each dimension, what the server admitted / what the quota
allowed between the first and the last arrival (limit + limit/60 x span); the largest
of those is the binding one. A contender that would take more than --max-seconds (the 2 s
default needs 8 minutes) stops starting calls then; its utilisation is over what it did.

    .venv/bin/python bench/adaptive.py                       # both header families
    .venv/bin/python bench/adaptive.py --family openai --only a-memory c-retry
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from cowork_llm import create_llm_client  # noqa: E402
from cowork_llm.config import RetryConfig  # noqa: E402
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters  # noqa: E402
from cowork_llm.testing import FakeLlmServer, Quota  # noqa: E402

RPM, TPM = 120, 40_000
PROMPT = ("Read the following note and answer in two sentences: the quarterly figures are in, "
          "revenue grew in every region, costs fell, and the board asks for a short summary. ") * 3
MAX_TOKENS = 200
CONTENDERS = ["a-memory", "a-sqlite", "a-redis", "b-default", "c-retry", "d-sdk"]

WORKER = """
import sys, threading, time
MAX_TOKENS = int(sys.argv[5])
from cowork_llm import create_llm_client
client = create_llm_client()
stop_at = float(sys.argv[3])
def work():
    for _ in range(int(sys.argv[1])):
        if time.time() >= stop_at:
            return
        client.chat([{"role": "user", "content": sys.argv[4]}], max_tokens=MAX_TOKENS)
threads = [threading.Thread(target=work) for _ in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
"""


def threads_doing(calls: int, threads: int, call: Callable[[], Any], stop_at: float) -> int:
    """Run ``call`` ``calls`` times in each of ``threads`` threads; the failures."""
    failures = [0]
    lock = threading.Lock()

    def work() -> None:
        for _ in range(calls):
            if time.time() >= stop_at:
                return
            try:
                call()
            except Exception:  # noqa: BLE001 - counted: the benchmark reports failures
                with lock:
                    failures[0] += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failures[0]


def run_cowork(server: FakeLlmServer, family: str, stop_at: float, calls: int, **settings: Any) -> int:
    _reset_global_rate_limiters()
    # The library's retry defaults (the fake's config() shortens the waits for tests).
    llm = create_llm_client(server.config(provider=family, retry=RetryConfig(), **settings))
    messages = [{"role": "user", "content": PROMPT}]
    try:
        return threads_doing(calls, 8, lambda: llm.chat(messages, max_tokens=MAX_TOKENS), stop_at)
    finally:
        llm.close()
        _reset_global_rate_limiters()


def run_processes(server: FakeLlmServer, family: str, stop_at: float, calls: int,
                  settings: Dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    env.update(server.env(provider=family, min_interval_seconds=0, max_concurrent=2,
                          key="bench-adaptive", retry=RetryConfig(), **settings))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(calls), "2", str(stop_at), PROMPT,
                                 str(MAX_TOKENS)],
                                env=env, stderr=subprocess.PIPE) for _ in range(4)]
    failed = 0
    for worker in workers:
        _, err = worker.communicate(timeout=3600)
        if worker.returncode != 0:
            failed += 1
            print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return failed


def run_sdk(server: FakeLlmServer, family: str, stop_at: float, calls: int) -> int:
    messages = [{"role": "user", "content": PROMPT}]
    if family == "openai":
        import openai

        client: Any = openai.OpenAI(base_url=server.base_url, api_key="bench-key")

        def call() -> Any:
            return client.chat.completions.create(model="fake-model", messages=messages,
                                                  max_tokens=MAX_TOKENS)
    else:
        import anthropic

        client = anthropic.Anthropic(base_url=server.base_url.removesuffix("/v1"), api_key="bench-key")

        def call() -> Any:
            return client.messages.create(model="fake-model", messages=messages, max_tokens=MAX_TOKENS)
    try:
        return threads_doing(calls, 8, call, stop_at)
    finally:
        client.close()


def measure(name: str, family: str, calls: int, max_seconds: float, redis_url: Optional[str],
            latency: float) -> Dict[str, Any]:
    quota = Quota(requests_per_minute=RPM, tokens_per_minute=TPM, headers=family)
    with FakeLlmServer(quota=quota, latency_seconds=latency) as server, \
            tempfile.TemporaryDirectory() as folder:
        began = time.monotonic()
        stop_at = time.time() + max_seconds
        if name == "a-memory":
            failed = run_cowork(server, family, stop_at, calls, min_interval_seconds=0, max_concurrent=8)
        elif name == "a-sqlite":
            failed = run_processes(server, family, stop_at, calls,
                                   {"backend": "sqlite", "path": os.path.join(folder, "l.sqlite")})
        elif name == "a-redis":
            assert redis_url is not None
            failed = run_processes(server, family, stop_at, calls,
                                   {"backend": "redis", "redis_url": redis_url})
        elif name == "b-default":
            failed = run_cowork(server, family, stop_at, calls, min_interval_seconds=2.0,
                                max_concurrent=1)  # the library's defaults (the fake's are 0)
        elif name == "c-retry":
            failed = run_cowork(server, family, stop_at, calls, min_interval_seconds=0,
                                max_concurrent=8, adaptive=False)
        else:
            failed = run_sdk(server, family, stop_at, calls)
        total = time.monotonic() - began
        arrivals = [r.arrival_monotonic for r in server.chat_requests]
        span = max(arrivals) - min(arrivals) if len(arrivals) > 1 else 0.0
        buckets = server.quota
        assert buckets is not None
        allowed = {"requests": RPM + RPM / 60 * span, "tokens": TPM + TPM / 60 * span}
        shares = {dim: buckets.spent[dim] / allowed[dim] for dim in allowed}
        binding = max(shares, key=lambda dim: shares[dim])
        return {"contender": name, "family": family, "429s": buckets.refused, "failed": failed,
                "done": buckets.admitted, "seconds": span, "wall": total, "binding": binding,
                "utilisation": shares[binding], "stopped": time.time() >= stop_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=["openai", "anthropic", "both"], default="both")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=CONTENDERS)
    parser.add_argument("--calls", type=int, default=30, help="calls per thread (8 threads)")
    parser.add_argument("--max-seconds", type=float, default=90.0)
    parser.add_argument("--latency", type=float, default=0.3, help="the server's answer time")
    args = parser.parse_args()
    families = ["openai", "anthropic"] if args.family == "both" else [args.family]
    rows: List[Dict[str, Any]] = []
    redis_ctx = None
    redis_url = None
    if "a-redis" in args.only:
        from _redis_server import redis_server

        redis_ctx = redis_server()
        redis_url = redis_ctx.__enter__()
    try:
        for family in families:
            for name in args.only:
                row = measure(name, family, args.calls, args.max_seconds, redis_url, args.latency)
                rows.append(row)
                print(f"{row['family']:9} {row['contender']:10} 429s {row['429s']:4} failed "
                      f"{row['failed']:3} done {row['done']:4} in {row['seconds']:6.1f} s"
                      f"{' (stopped)' if row['stopped'] else '':10} utilisation of {row['binding']} "
                      f"{100 * row['utilisation']:5.1f} %", flush=True)
    finally:
        if redis_ctx is not None:
            redis_ctx.__exit__(None, None, None)
    print()
    print("| family | contender | 429s | failed calls | requests done | total time | "
          "utilisation (binding quota) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        stopped = " (stopped)" if row["stopped"] else ""
        print(f"| {row['family']} | {row['contender']} | {row['429s']} | {row['failed']} | "
              f"{row['done']} | {row['seconds']:.1f} s{stopped} | {100 * row['utilisation']:.1f} % "
              f"({row['binding']}) |")


if __name__ == "__main__":
    main()
