"""Quickstart: four threads share ONE rate-limited client.

    python examples/quickstart.py

With nothing configured (no ./config.toml, no COWORK_LLM_* variable, no COWORK_CONFIG)
it starts the built-in FakeLlmServer on 127.0.0.1 and talks to that, with the library's
default limits. Otherwise it talks to the LLM you configured.

Watch the start times (``ChatResult.started_at``: when the limiter let the request go):
the threads all ask at once, and the limiter lets one request start every 2 s
(llm.rate_limit.min_interval_seconds), in the order they asked.
"""

import itertools
import logging
import os
import sys
import threading
import time
from typing import List, Optional, Tuple

from cowork_llm import (
    ConfigError,
    LlmConfig,
    LlmError,
    RateLimitConfig,
    create_llm_client,
    load_config,
)
from cowork_llm.testing import FakeLlmServer

PROMPTS = [
    "Name a colour, in one word.",
    "Name a fruit, in one word.",
    "Name a river, in one word.",
    "Name a planet, in one word.",
]


def nothing_configured() -> bool:
    """True when there is no config file and no COWORK_* variable to read."""
    return not (os.path.exists("config.toml") or os.environ.get("COWORK_CONFIG")
                or any(name.startswith("COWORK_LLM_") for name in os.environ))


def choose_config() -> Tuple[LlmConfig, Optional[FakeLlmServer]]:
    """Your configuration; with none, the built-in fake server with the default limits.

    Raises ConfigError (naming the key, variable or file) for a configuration that is wrong.
    """
    if not nothing_configured():
        return load_config(), None  # ./config.toml, else $COWORK_CONFIG, then COWORK_LLM_*
    print("no LLM configured — demo against the built-in fake server; "
          "set COWORK_LLM_* or write config.toml to use a real one")
    server = FakeLlmServer().start()
    return server.config(rate_limit=RateLimitConfig()), server


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config, server = choose_config()
        client = create_llm_client(config)  # ONE client, shared by every thread below
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    interval = config.rate_limit.min_interval_seconds
    print(f"{len(PROMPTS)} threads share one client for {config.model.model_name} at "
          f"{config.model.base_url}; requests start at least {interval:g} s apart")

    t0, t0_wall = time.monotonic(), time.time()
    print_lock = threading.Lock()
    failures: List[int] = []

    def ask(number: int, prompt: str) -> None:  # runs in its own thread
        try:
            result = client.chat([{"role": "user", "content": prompt}], max_tokens=20)
        except LlmError as error:  # one line per failure; the other threads carry on
            with print_lock:
                failures.append(number)
                print(f"call {number} failed after {time.monotonic() - t0:.1f} s: {error}")
            return
        if result.started_at is not None:  # when the limiter let this request go
            when = f"started +{result.started_at - t0_wall:.1f} s"
        else:  # a response cache ([llm.cache]) answered: no request was sent
            when = "cached"
        usage = result.usage
        tokens = (f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
                  if usage else "no token usage reported")
        with print_lock:
            print(f"call {number}  {when}  {prompt!r} -> {result.content.strip()!r}  ({tokens})")

    threads = [threading.Thread(target=ask, args=(number, prompt), daemon=True)
               for number, prompt in enumerate(PROMPTS, start=1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    if server is not None:
        server.stop()

    if server is not None and not failures:
        starts = sorted(r.arrival_monotonic for r in server.chat_requests)
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        print(f"{len(starts)} calls, starts {min(gaps):.1f} s apart or more: all {len(PROMPTS)} "
              f"threads asked at once and the shared limiter spaced them {interval:g} s apart")
    elif not failures:
        print(f"{len(PROMPTS)} calls in {time.monotonic() - t0:.1f} s: the shared limiter "
              f"started them at least {interval:g} s apart, in the order the threads asked")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
