"""How the shared limiter scales: utilisation, spacing, waits and CPU at 20 and 100
requests/s, with 1 to 8 processes, next to its peers on the same workload.

Each run starts a FakeLlmServer (answering at once) in this process and the clients in
child processes; every client thread sends requests back to back for --seconds, so
demand always exceeds the limit. Scenarios per interval (--intervals, default 50 ms and
10 ms):

  memory 1x16         one process, 16 threads, backend memory
  sqlite|redis PxT    P processes x T threads (2x4, 4x4, 8x4), one limit
  sqlite|redis 1x16+3x1  the unequal case: one process with 16 threads, three with 1
  limits 4x4          the `limits` library: moving window on the same Redis, "n per
                      second" (its granularity), threads loop hit() and sleep until its
                      window stats say a slot frees
  pyrate 4x4          pyrate-limiter's own Limiter(RedisBucket) blocking try_acquire

Reported per run: utilisation (admitted rate / allowed rate, at the server); admission
gaps below the interval (at admission: the store's own timestamps; not available for
the peers); arrival gaps below the interval minus 2 ms (at the server); the wait per
request (call -> arrival) p50 / p99 / max next to its bound (requests queued x
interval); client CPU per admitted request (each child's getrusage over its workload,
start-up excluded); Redis CPU per request (INFO used_cpu_*).

--limiter-only runs the same scenarios with no HTTP request: each thread takes a slot
(with the demand the adaptive view charges) and reports usage, as the client does
around a request; utilisation and gaps are then taken at admission, and the CPU column
is the limiter's own.

    /work/venv/bin/python bench/limiter_scale.py                 # everything, 20 s each
    /work/venv/bin/python bench/limiter_scale.py --seconds 10 --only redis --intervals 0.01
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from _redis_server import redis_server  # noqa: E402

from cowork_llm.testing import FakeLlmServer  # noqa: E402

WORKER = r'''
import json, os, resource, sys, threading, time, uuid
mode, key = sys.argv[1], sys.argv[5]
threads, seconds, interval = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
admitted, waits, lock = [], [], threading.Lock()
if mode in ("cowork", "limiter"):
    from cowork_llm import create_llm_client
    from cowork_llm.rate_limiter import get_global_rate_limiter
    client = create_llm_client()
    backend = get_global_rate_limiter(key).backend
    if hasattr(backend, "_acquire"):  # redis: the script's own clock
        ask = backend._acquire
        def recording(**kwargs):
            answer = ask(**kwargs)
            if int(answer[0]) == 0:
                with lock: admitted.append((float(answer[2]) + float(answer[1])) / 1000)  # now + reservation
            return answer
        backend._acquire = recording
    else:  # memory, sqlite: the timestamp put into the bucket
        put = backend._put_request
        def recording_put(item):
            ok = put(item)
            if ok:
                with lock: admitted.append(item.timestamp / 1e6)  # microseconds
            return ok
        backend._put_request = recording_put
    if mode == "cowork":
        def send(tag): client.chat([{"role": "user", "content": tag}])
    else:  # what the client does around a request, without the request
        from cowork_llm.rate_limiter._provider_view import demand_for
        limiter = get_global_rate_limiter(key)
        demand, used = demand_for(8, 100), {"tokens": 20.0, "input_tokens": 8.0, "output_tokens": 12.0}
        def send(tag):
            with limiter.slot(tokens=100, demand=demand) as slot:
                pass
            limiter.observe(slot, None, used)
else:
    import redis
    from cowork_llm.config import ModelConfig
    from cowork_llm.providers import build_provider
    provider = build_provider(ModelConfig(**json.loads(os.environ["BENCH_MODEL"])))
    r = redis.Redis.from_url(os.environ["BENCH_REDIS"])
    if mode == "limits":
        from limits import RateLimitItemPerSecond, storage, strategies
        per_second = round(1 / interval)
        item = RateLimitItemPerSecond(per_second, 1)
        limiter = strategies.MovingWindowRateLimiter(storage.RedisStorage(os.environ["BENCH_REDIS"]))
        def send(tag):
            while not limiter.hit(item, key):
                stats = limiter.get_window_stats(item, key)
                time.sleep(max(0.001, stats.reset_time - time.time()))
            provider.chat([{"role": "user", "content": tag}])
    else:
        from pyrate_limiter import Limiter, Rate, RedisBucket
        bucket = RedisBucket.init([Rate(1, round(interval * 1000))], r, key)
        limiter = Limiter(bucket)
        def send(tag):
            limiter.try_acquire(key)
            provider.chat([{"role": "user", "content": tag}])
print("ready", flush=True)
sys.stdin.readline()
deadline = time.monotonic() + seconds
before = resource.getrusage(resource.RUSAGE_SELF)
def loop():
    while time.monotonic() < deadline:
        tag = uuid.uuid4().hex
        started = time.monotonic()
        send(tag)
        with lock: waits.append((tag, started))
ts = [threading.Thread(target=loop) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
print(json.dumps({"admitted": admitted, "starts": waits, "cpu": cpu}), flush=True)
os._exit(0)  # no lingering threads (pyrate's leaker) at exit
'''


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def redis_cpu(url: str) -> float:
    import redis
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run(mode: str, backend: str, layout: List[int], interval: float, seconds: float,
        store: Dict[str, Any], key: str) -> Dict[str, Any]:
    """One run: ``layout`` lists the threads of each process."""
    with FakeLlmServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
        threads = sum(layout)
        settings = {"backend": backend, **store} if backend != "memory" else {}
        env.update(server.env(min_interval_seconds=interval, key=key, max_concurrent=max(layout),
                              **settings))
        if "redis_url" in store:
            env["BENCH_REDIS"] = store["redis_url"]
        model = server.config().model
        env["BENCH_MODEL"] = json.dumps({"provider": model.provider, "base_url": model.base_url,
                                         "api_key": model.api_key, "model_name": model.model_name})
        redis_before = redis_cpu(store["redis_url"]) if "redis_url" in store else None
        workers = [subprocess.Popen([sys.executable, "-c", WORKER, mode, str(n), str(seconds),
                                     str(interval), key], env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE) for n in layout]
        for worker in workers:
            assert worker.stdout.readline() == b"ready\n"
        for worker in workers:
            worker.stdin.write(b"go\n")
            worker.stdin.flush()
        reports = []
        for worker in workers:
            out, _ = worker.communicate(timeout=seconds + 120)
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        redis_after = redis_cpu(store["redis_url"]) if "redis_url" in store else None
        arrivals = {r.messages[-1]["content"]: r.arrival_monotonic for r in server.chat_requests}
    return summarise(reports, arrivals, interval, threads, redis_before, redis_after)


def summarise(reports: List[Dict[str, Any]], arrivals: Dict[str, float], interval: float,
              threads: int, redis_before: Optional[float], redis_after: Optional[float]) -> Dict[str, Any]:
    admitted = sorted(t for report in reports for t in report["admitted"])
    # --limiter-only: no server; the starts are the admissions (on the store's clock).
    times = sorted(arrivals.values()) if arrivals else admitted
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    admission_gaps = [b - a for a, b in zip(admitted, admitted[1:], strict=False)]
    waits = [arrivals[tag] - started for report in reports for tag, started in report["starts"]
             if tag in arrivals]
    count = len(times)
    return {
        "requests": count,
        "utilisation": (count - 1) * interval / (times[-1] - times[0]) if count > 1 else 0.0,
        "admission_short": sum(1 for g in admission_gaps if g < interval) if admitted else None,
        "arrival_short": sum(1 for g in gaps if g < interval - 0.002),
        "min_arrival_gap_ms": min(gaps) * 1000 if gaps else float("nan"),
        "wait_p50": percentile(waits, 0.5), "wait_p99": percentile(waits, 0.99),
        "wait_max": max(waits) if waits else float("nan"), "bound": threads * interval,
        "cpu_ms": 1000 * sum(r["cpu"] for r in reports) / max(count, 1),
        "redis_cpu_ms": (1000 * (redis_after - redis_before) / max(count, 1)
                         if redis_before is not None and redis_after is not None else None),
    }


SCENARIOS: List[Tuple[str, str, str, List[int]]] = [  # (mode, backend, label, layout)
    ("cowork", "memory", "1x16", [16]),
    *[("cowork", b, f"{p}x4", [4] * p) for b in ("sqlite", "redis") for p in (2, 4, 8)],
    *[("cowork", b, "1x16+3x1", [16, 1, 1, 1]) for b in ("sqlite", "redis")],
    ("limits", "redis", "4x4", [4] * 4),
    ("pyrate", "redis", "4x4", [4] * 4),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.05, 0.01])
    parser.add_argument("--limiter-only", action="store_true",
                        help="the limiter alone: each thread takes a slot and reports usage as "
                             "the client does, with no HTTP request (client CPU of the limiter)")
    parser.add_argument("--only", nargs="+", help="modes or backends to run (cowork, limits, "
                        "pyrate, memory, sqlite, redis)")
    args = parser.parse_args()
    print("| interval | who | procs x threads | utilisation | admission gaps < interval | "
          "arrival gaps < interval - 2 ms (min) | wait p50 / p99 / max (bound) | client CPU "
          "per request | Redis CPU per request |")
    print("|---|---|---|---|---|---|---|---|---|")
    with redis_server() as url, tempfile.TemporaryDirectory() as workdir:
        for interval in args.intervals:
            for n, (mode, backend, label, layout) in enumerate(SCENARIOS):
                if args.only and mode not in args.only and backend not in args.only:
                    continue
                if args.limiter_only:
                    if mode != "cowork":
                        continue  # the peers have no limiter-only mode here
                    mode = "limiter"
                store: Dict[str, Any] = {"redis_url": url} if backend == "redis" else {}
                if backend == "sqlite":
                    store = {"path": os.path.join(workdir, f"run{n}-{interval}.sqlite")}
                key = f"bench-{n}-{interval}"
                r = run(mode, backend, layout, interval, args.seconds, store, key)
                who = {"cowork": backend, "limiter": f"{backend}, limiter only"}.get(mode, f"{mode} (peer)")
                short = "—" if r["admission_short"] is None else str(r["admission_short"])
                redis_ms = "—" if r["redis_cpu_ms"] is None else f"{r['redis_cpu_ms']:.2f} ms"
                print(f"| {interval * 1000:.0f} ms | {who} | {label} | {100 * r['utilisation']:.1f} % "
                      f"| {short} | {r['arrival_short']} ({r['min_arrival_gap_ms']:.1f} ms) | "
                      f"{r['wait_p50']:.2f} / {r['wait_p99']:.2f} / {r['wait_max']:.2f} s "
                      f"({r['bound']:.2f} s) | {r['cpu_ms']:.2f} ms | {redis_ms} |", flush=True)


if __name__ == "__main__":
    main()
