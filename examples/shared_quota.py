"""Several scripts, one API key, one rate limit.

    python examples/shared_quota.py          # 3 worker processes share one quota

Each worker is a separate process (think: cron jobs, pipeline stages, a script started
twice) with its own client from ``create_llm_client()``. They share the limit because
they use the same ``[llm.rate_limit]`` backend, ``path`` (or ``redis_url``) and ``key``:

    [llm.rate_limit]
    min_interval_seconds = 2.0
    backend = "sqlite"                     # every process on this machine...
    path = "/var/tmp/my-team-llm.sqlite"   # ...using this file shares the limit
    # backend = "redis"                    # or every process on every host...
    # redis_url = "redis://:PASSWORD@redis.internal:6379/0"   # ...using this Redis

Set up the LLM with COWORK_LLM_* variables or config.toml; with nothing configured this
runs against a built-in fake server with a 0.5 s interval and prints when each request
reached it. The workers use backend "sqlite" with ./shared-quota.sqlite unless
COWORK_LLM_RATE_LIMIT_BACKEND says otherwise.
"""

import os
import subprocess
import sys
import time

from cowork_llm import create_llm_client

WORKERS = 3
QUESTIONS = ["Name a colour.", "Name a river."]


def worker(number: str) -> None:
    """One process: its own client, its own questions; the limit is the group's."""
    client = create_llm_client()
    for question in QUESTIONS:
        answer = client.chat([{"role": "user", "content": f"[worker {number}] {question}"}])
        print(f"worker {number}: {answer.content!r}", flush=True)


def start_workers(env: dict) -> None:
    env.setdefault("COWORK_LLM_RATE_LIMIT_BACKEND", "sqlite")
    env.setdefault("COWORK_LLM_RATE_LIMIT_PATH", os.path.abspath("shared-quota.sqlite"))
    workers = [subprocess.Popen([sys.executable, __file__, "--worker", str(n)], env=env)
               for n in range(1, WORKERS + 1)]
    failed = [w.args[-1] for w in workers if w.wait() != 0]
    if failed:
        sys.exit(f"workers {', '.join(failed)} failed")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        return
    if any(name.startswith("COWORK_LLM_") for name in os.environ) or os.path.exists("config.toml"):
        start_workers(dict(os.environ))
        return
    from cowork_llm.testing import FakeLlmServer

    print("no LLM configured — demo against the built-in fake server (0.5 s interval)")
    with FakeLlmServer() as server:
        start_workers({**os.environ, **server.env(min_interval_seconds=0.5)})
        arrivals = sorted((r.arrival_monotonic, r.messages[-1]["content"]) for r in server.chat_requests)
    first = arrivals[0][0] if arrivals else time.monotonic()
    for arrived, prompt in arrivals:
        print(f"+{arrived - first:4.2f} s  {prompt}")


if __name__ == "__main__":
    main()
