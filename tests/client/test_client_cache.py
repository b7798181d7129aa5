"""The response cache through the client: a hit spends neither the network nor a limiter
slot, only answers are stored, TTL, a corrupt file, two processes, never the key."""

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from cowork_llm import create_llm_client
from cowork_llm.cache import MemoryCache, SqliteCache
from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import CacheConfig
from cowork_llm.errors import BadRequestError
from cowork_llm.providers import build_provider
from cowork_llm.rate_limiter import init_global_rate_limiter
from cowork_llm.retry import RetryPolicy
from cowork_llm.testing import FakeLlmServer

KEY = "sk-cache-SECRET-0123456789abcdef"
MEMORY = CacheConfig(backend="memory")


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as srv:
        yield srv


def ask(text):
    return [{"role": "user", "content": text}]


def sqlite_config(tmp_path, **settings):
    return CacheConfig(backend="sqlite", path=str(tmp_path / "cache" / "responses.sqlite"), **settings)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_hit_takes_no_request_no_slot_and_no_interval_wait(server, tmp_path, backend):
    cache = MEMORY if backend == "memory" else sqlite_config(tmp_path)
    with create_llm_client(server.config(min_interval_seconds=2.0, cache=cache)) as client:
        first = client.chat(ask("Name a river"))
        admitted = client.limiter.admitted_count
        began = time.monotonic()
        second = client.chat(ask("Name a river"))
        elapsed = time.monotonic() - began
        usage = client.usage().total
    assert len(server.chat_requests) == 1
    assert admitted == 1 and client.limiter.admitted_count == 1
    # Without the cache this call would wait ~2 s for the interval.
    assert elapsed < 1.0, elapsed
    assert not first.cached and second.cached
    assert second.content == first.content and second.usage == first.usage
    assert second.started_at is None and second.waited_seconds == 0.0
    assert (usage.requests, usage.cached_hits, usage.http_attempts) == (2, 1, 1)
    assert usage.prompt_tokens == first.usage.prompt_tokens  # the hit added no tokens


def test_cache_false_bypasses_the_cache_for_one_call(server):
    with create_llm_client(server.config(cache=MEMORY)) as client:
        client.chat(ask("fresh, please"))
        bypassed = client.chat(ask("fresh, please"), cache=False)
        cached = client.chat(ask("fresh, please"))
    assert not bypassed.cached and cached.cached
    assert len(server.chat_requests) == 2


def test_the_options_are_part_of_the_key(server):
    with create_llm_client(server.config(cache=MEMORY, temperature=0.2)) as client:
        client.chat(ask("same words"))
        assert client.chat(ask("same words"), temperature=0.2).cached  # the configured default
        assert not client.chat(ask("same words"), temperature=0.9).cached
        assert not client.chat(ask("same words"), max_tokens=5).cached
        assert not client.chat([{"role": "system", "content": "terse"}, *ask("same words")]).cached
    assert len(server.chat_requests) == 4


def test_only_answers_are_stored_never_errors(server):
    server.fail_next(400)
    with create_llm_client(server.config(cache=MEMORY)) as client:
        with pytest.raises(BadRequestError):
            client.chat(ask("first try fails"))
        result = client.chat(ask("first try fails"))
        again = client.chat(ask("first try fails"))
    assert not result.cached and again.cached
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_an_entry_expires_after_ttl_seconds(server, tmp_path, backend):
    now = [1_000_000.0]
    if backend == "memory":
        cache = MemoryCache(ttl_seconds=60, clock=lambda: now[0])
    else:
        cache = SqliteCache(tmp_path / "ttl.sqlite", ttl_seconds=60, clock=lambda: now[0])
    config = server.config()
    client = RateLimitedLlm(build_provider(config.model), init_global_rate_limiter(config.rate_limit),
                            RetryPolicy(config.retry), cache=cache)
    with client:
        client.chat(ask("how long do you last?"))
        now[0] += 59.0
        assert client.chat(ask("how long do you last?")).cached
        now[0] += 1.0  # 60 s after it was stored
        assert not client.chat(ask("how long do you last?")).cached
        assert client.chat(ask("how long do you last?")).cached  # stored again
    assert len(server.chat_requests) == 2


def test_a_corrupt_cache_file_warns_and_starts_fresh(server, tmp_path, caplog):
    cache = sqlite_config(tmp_path)
    os.makedirs(os.path.dirname(cache.path))
    with open(cache.path, "wb") as f:
        f.write(b"this is not a database, just bytes " * 100)
    caplog.set_level(logging.WARNING, logger="cowork_llm")
    with create_llm_client(server.config(cache=cache)) as client:
        first = client.chat(ask("still works?"))
        second = client.chat(ask("still works?"))
    assert first.content == "echo: still works?" and second.cached
    assert len(server.chat_requests) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(cache.path in w for w in warnings), warnings
    moved = [name for name in os.listdir(os.path.dirname(cache.path)) if ".corrupt-" in name]
    assert len(moved) == 1  # the user's file is kept aside, not deleted


def test_many_threads_share_the_cache_and_the_counts_add_up(server):
    prompts = [f"question {i}" for i in range(5)]
    with create_llm_client(server.config(cache=MEMORY, max_concurrent=4)) as client:
        results, lock = [], threading.Lock()

        def worker():
            for prompt in prompts:
                result = client.chat(ask(prompt))
                with lock:
                    results.append((prompt, result))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        usage = client.usage().total
    sent = len(server.chat_requests)
    assert len(results) == 40
    assert all(result.content == f"echo: {prompt}" for prompt, result in results)
    assert 5 <= sent <= 40
    assert sum(result.cached for _, result in results) == usage.cached_hits == 40 - sent
    assert usage.requests == 40 and usage.http_attempts == sent


ASK_SCRIPT = """
import json, sys
from cowork_llm import create_llm_client
with create_llm_client() as client:
    print(json.dumps([client.chat([{"role": "user", "content": p}]).cached for p in sys.argv[1:]]))
"""


def run_asker(server, cache, *prompts):
    """A separate Python process asking ``prompts`` through create_llm_client."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    env.update(server.env(cache=cache))
    return subprocess.Popen([sys.executable, "-c", ASK_SCRIPT, *prompts], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process):
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "WARNING" not in err and "Traceback" not in err, err
    return json.loads(out)


def test_two_processes_share_one_cache_file(server, tmp_path):
    cache = sqlite_config(tmp_path)
    assert finished(run_asker(server, cache, "shared one", "shared two")) == [False, False]
    assert finished(run_asker(server, cache, "shared two", "shared one", "new")) == [True, True, False]
    assert len(server.chat_requests) == 3

    # Both at once, on the same prompts: each answer is asked for once or twice, never
    # more, and neither process fails or warns about the shared file.
    prompts = [f"together {i}" for i in range(6)]
    a, b = run_asker(server, cache, *prompts), run_asker(server, cache, *prompts)
    hits = finished(a) + finished(b)
    assert len(server.chat_requests) == 3 + 12 - sum(hits)
    assert 6 <= len(server.chat_requests) - 3 <= 12
    assert finished(run_asker(server, cache, *prompts)) == [True] * 6


def test_the_cache_file_never_holds_the_key(server, tmp_path):
    cache = sqlite_config(tmp_path)
    with create_llm_client(server.config(cache=cache)) as client:
        for i in range(3):
            client.chat(ask(f"keep my key out {i}"))
    folder = os.path.dirname(cache.path)
    files = os.listdir(folder)
    assert files  # the database (and perhaps its WAL) exists
    for name in files:
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        assert KEY.encode() not in data and KEY[-8:].encode() not in data
    reopened = SqliteCache(cache.path)
    assert len(reopened) == 3  # the answers are in there: the check above looked at them
    reopened.close()
