"""The response cache: keys, both backends, expiry, eviction, damage, sharing."""

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from cowork_llm.cache import MemoryCache, SqliteCache, build_cache, cache_key
from cowork_llm.cache.base import result_from_json, result_to_json
from cowork_llm.config import CacheConfig
from cowork_llm.results import ChatResult, Usage

MESSAGES = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi ✓"}]
SECRET = "sk-test-SECRET-never-on-disk-0123456789"


def result(content="hello", **kw):
    base = dict(content=content, model="gpt-4o-2024-08-06", finish_reason="stop",
                usage=Usage.of(12, 3), request_id="req_123")
    base.update(kw)
    return ChatResult(**base)


class FakeClock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def key(n=0):
    return cache_key("openai", "https://api.example.com/v1", "gpt-4o",
                     [{"role": "user", "content": f"question {n}"}], {"temperature": 0.0})


@pytest.fixture(params=["memory", "sqlite"])
def make_cache(request, tmp_path):
    """A factory for either backend, so both honour the same contract."""
    made = []

    def make(**kw):
        if request.param == "memory":
            cache = MemoryCache(**kw)
        else:
            cache = SqliteCache(tmp_path / "cache.sqlite", **kw)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


# --- keys ------------------------------------------------------------------------------


def test_key_is_sha256_hex_and_stable_across_option_order_and_trailing_slash():
    a = cache_key("openai", "https://h/v1", "m", MESSAGES, {"temperature": 0.2, "max_tokens": 5})
    b = cache_key("openai", "https://h/v1/", "m", MESSAGES, {"max_tokens": 5, "temperature": 0.2})
    assert a == b and len(a) == 64 and int(a, 16) >= 0


def test_none_options_mean_the_same_as_absent_ones():
    assert cache_key("openai", "https://h", "m", MESSAGES, {"temperature": None}) == \
        cache_key("openai", "https://h", "m", MESSAGES)


@pytest.mark.parametrize("change", [
    dict(provider="anthropic"),
    dict(base_url="https://other/v1"),
    dict(model="gpt-4o-mini"),
    dict(messages=[{"role": "user", "content": "Hi ✓"}]),
    dict(messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi ✓ "}]),
    dict(options={"temperature": 0.3}),
    dict(options={"temperature": 0.2, "max_tokens": 10}),
])
def test_every_input_that_changes_the_answer_changes_the_key(change):
    base = dict(provider="openai", base_url="https://h/v1", model="gpt-4o", messages=MESSAGES,
                options={"temperature": 0.2})
    assert cache_key(**base) != cache_key(**{**base, **change})


@pytest.mark.parametrize("name", ["api_key", "Authorization", "x-api-key", "access_token"])
def test_credential_like_options_are_refused(name):
    with pytest.raises(ValueError, match=name):
        cache_key("openai", "https://h", "m", MESSAGES, {name: SECRET})


def test_max_tokens_is_not_mistaken_for_a_credential():
    cache_key("openai", "https://h", "m", MESSAGES, {"max_tokens": 5, "max_completion_tokens": 5})


def test_unserialisable_option_is_a_clear_value_error():
    with pytest.raises(ValueError, match="plain JSON"):
        cache_key("openai", "https://h", "m", MESSAGES, {"temperature": object()})
    with pytest.raises(ValueError, match="plain JSON"):
        cache_key("openai", "https://h", "m", MESSAGES, {"temperature": float("nan")})


# --- serialisation ---------------------------------------------------------------------


def test_stored_form_round_trips_the_fields_and_marks_the_hit_cached():
    original = result(raw={"id": "x"})
    back = result_from_json(result_to_json(original))
    assert (back.content, back.model, back.finish_reason, back.usage, back.request_id) == (
        original.content, original.model, original.finish_reason, original.usage, original.request_id)
    assert back.cached is True and back.raw == {}
    empty = result_from_json(result_to_json(result(usage=None, finish_reason=None, request_id=None)))
    assert empty.usage is None and empty.finish_reason is None and empty.request_id is None


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"content": 5, "model": "m", "finish_reason": null, '
                                  '"usage": null, "request_id": null}'])
def test_damaged_stored_form_is_a_value_error(text):
    with pytest.raises(ValueError, match="not a stored result"):
        result_from_json(text)


# --- the contract, for both backends ---------------------------------------------------


def test_miss_then_hit_with_cached_true(make_cache):
    cache = make_cache()
    assert cache.get(key()) is None
    cache.put(key(), result(raw={"big": "payload"}))
    hit = cache.get(key())
    assert hit is not None and hit.cached is True and hit.raw == {}
    assert hit.content == "hello" and hit.usage == Usage(12, 3, 15) and hit.request_id == "req_123"
    assert cache.get(key(1)) is None


def test_put_replaces_an_older_entry(make_cache):
    cache = make_cache()
    cache.put(key(), result("old"))
    cache.put(key(), result("new"))
    assert cache.get(key()).content == "new"
    assert len(cache) == 1


def test_entries_expire_after_ttl(make_cache):
    clock = FakeClock()
    cache = make_cache(ttl_seconds=60, clock=clock)
    cache.put(key(), result())
    clock.now += 59.9
    assert cache.get(key()) is not None
    clock.now += 0.1
    assert cache.get(key()) is None


def test_eviction_keeps_at_most_max_entries_dropping_the_oldest(make_cache):
    clock = FakeClock()
    cache = make_cache(max_entries=3, clock=clock)
    for n in range(5):
        clock.now += 1
        cache.put(key(n), result(f"answer {n}"))
    assert len(cache) == 3
    assert cache.get(key(0)) is None and cache.get(key(1)) is None
    assert [cache.get(key(n)).content for n in (2, 3, 4)] == ["answer 2", "answer 3", "answer 4"]


def test_invalid_limits_are_refused(make_cache):
    with pytest.raises(ValueError):
        make_cache(max_entries=0)
    with pytest.raises(ValueError):
        make_cache(ttl_seconds=0)


def test_sixteen_threads_hammering_one_cache(make_cache):
    cache = make_cache(max_entries=10_000)
    threads_n, per_thread = 16, 60
    start = threading.Barrier(threads_n)
    errors = []

    def work(t):
        try:
            start.wait()
            for n in range(per_thread):
                k = key(t * 1000 + n)
                cache.put(k, result(f"{t}:{n}"))
                shared = key(-1)  # every thread also fights over one entry
                cache.put(shared, result(f"shared {t}"))
                got = cache.get(k)
                assert got is not None and got.content == f"{t}:{n}"
                assert cache.get(shared).content.startswith("shared ")
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == threads_n * per_thread + 1


def test_memory_cache_is_lru_a_read_keeps_an_entry():
    clock = FakeClock()
    cache = MemoryCache(max_entries=2, clock=clock)
    cache.put(key(0), result("zero"))
    cache.put(key(1), result("one"))
    assert cache.get(key(0)) is not None  # now key(1) is the least recently used
    cache.put(key(2), result("two"))
    assert cache.get(key(1)) is None
    assert cache.get(key(0)).content == "zero"


# --- build_cache -----------------------------------------------------------------------


def test_build_cache_follows_the_config(tmp_path):
    assert build_cache(CacheConfig()) is None
    memory = build_cache(CacheConfig(backend="memory", max_entries=7, ttl_seconds=9))
    assert isinstance(memory, MemoryCache) and (memory.max_entries, memory.ttl_seconds) == (7, 9)
    path = tmp_path / "sub" / "dir" / "cache.sqlite"
    sqlite_cache = build_cache(CacheConfig(backend="sqlite", path=str(path), max_entries=5))
    assert isinstance(sqlite_cache, SqliteCache) and sqlite_cache.max_entries == 5
    sqlite_cache.put(key(), result())
    sqlite_cache.close()
    assert path.is_file()


# --- SQLite specifics ------------------------------------------------------------------


def test_sqlite_survives_reopening_and_uses_wal(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = SqliteCache(path)
    first.put(key(), result())
    first.close()
    first.close()  # twice is fine
    assert first.get(key()) is None  # closed: a miss, not an error
    second = SqliteCache(path)
    assert second.get(key()).content == "hello"
    second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_api_key_never_reaches_the_file(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = SqliteCache(path)
    # A provider may echo anything back in the raw response; raw is not stored.
    echoed = result(raw={"headers": {"Authorization": f"Bearer {SECRET}"}})
    k = cache_key("openai", "https://api.example.com/v1", "gpt-4o", MESSAGES, {"temperature": 0})
    cache.put(k, echoed)
    assert cache.get(k) is not None
    cache.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite"))
    assert k.encode() in blob  # we really are looking at the stored data
    assert SECRET.encode() not in blob
    assert SECRET[-12:].encode() not in blob


def test_a_corrupt_file_is_moved_aside_with_a_warning_and_a_fresh_cache_starts(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    garbage = b"this is not a database, but it is the user's file\n" * 200
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        cache = SqliteCache(path)
    assert "damaged" in caplog.text and "corrupt-" in caplog.text
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept, not deleted
    assert not cache.in_memory_fallback
    cache.put(key(), result())
    assert cache.get(key()).content == "hello"
    cache.close()
    assert SqliteCache(path).get(key()) is not None  # the fresh file is real


class _DamagedConnection:
    """Stands in for a connection whose file went bad after it was opened (SQLite would
    notice on its next read from disk; its page cache makes that hard to force)."""

    def __init__(self, real):
        self.real = real

    def execute(self, *args):
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self):
        self.real.close()


def test_a_file_damaged_while_open_is_replaced_at_the_next_call(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    cache = SqliteCache(path)
    cache.put(key(), result())
    cache._conn = _DamagedConnection(cache._conn)
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        assert cache.get(key()) is None  # a miss, not an exception
    assert "damaged" in caplog.text
    aside = [p for p in tmp_path.iterdir()
             if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1
    with sqlite3.connect(aside[0]) as conn:  # the old data was kept, not deleted
        assert conn.execute("SELECT COUNT(*) FROM cowork_llm_responses").fetchone()[0] == 1
    cache.put(key(1), result("after"))
    assert cache.get(key(1)).content == "after"
    assert cache.get(key()) is None  # the fresh file starts empty
    cache.close()


def test_an_unopenable_path_falls_back_to_memory_with_a_warning(tmp_path, caplog):
    path = tmp_path / "is-a-directory"
    path.mkdir()
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        cache = SqliteCache(path)
    assert cache.in_memory_fallback
    assert "cannot be used" in caplog.text and str(path) in caplog.text
    cache.put(key(), result())
    assert cache.get(key()).cached is True
    assert path.is_dir() and list(path.iterdir()) == []  # nothing of the user's touched


def test_a_damaged_entry_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    cache = SqliteCache(path)
    cache.put(key(), result())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cowork_llm_responses SET result = '{broken'")
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        assert cache.get(key()) is None
    assert "damaged entry" in caplog.text
    assert len(cache) == 0
    cache.close()


def test_a_locked_file_gives_a_warning_and_a_miss_never_an_exception(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    cache = SqliteCache(path, busy_timeout_seconds=0.05)
    cache.put(key(), result())
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # in WAL mode this blocks writers, not readers
    try:
        with caplog.at_level(logging.DEBUG, logger="cowork_llm"):
            cache.put(key(1), result("blocked"))
            cache.put(key(2), result("blocked"))
            assert cache.get(key()).content == "hello"  # reads still work under WAL
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "could not write" in warnings[0].getMessage()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert cache.get(key(1)) is None
    cache.put(key(1), result("later"))
    assert cache.get(key(1)).content == "later"
    cache.close()


def test_a_file_held_by_another_connection_while_opening_is_waited_for(tmp_path, caplog):
    # Another connection holds the file while the cache opens it: the cache waits for
    # it (up to busy_timeout_seconds) rather than giving the file up for its whole life.
    path = tmp_path / "cache.sqlite"
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("CREATE TABLE other (x)")
    blocker.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.3, blocker.execute, ("ROLLBACK",))
    release.start()
    try:
        with caplog.at_level(logging.WARNING, logger="cowork_llm"):
            cache = SqliteCache(path)
            cache.put(key(), result())
        assert not cache.in_memory_fallback and caplog.text == ""
        cache.close()
    finally:
        release.join()
        blocker.close()
    again = SqliteCache(path)
    assert again.get(key()).content == "hello"  # in the file, not in a process's memory
    again.close()


def test_a_file_held_past_the_busy_timeout_falls_back_with_a_warning(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("CREATE TABLE other (x)")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="cowork_llm"):
            started = time.monotonic()
            cache = SqliteCache(path, busy_timeout_seconds=0.2)
            cache.put(key(), result())
            assert cache.get(key()).content == "hello"  # from memory
        assert 0.15 < time.monotonic() - started < 5.0
        assert cache.in_memory_fallback and "caching in memory" in caplog.text
        cache.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


_CHILD = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(format="%(levelname)s %(message)s")  # a fallback shows as a WARNING
    from cowork_llm.cache import SqliteCache, cache_key
    from cowork_llm.llm import ChatResult
    path, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = SqliteCache(path)
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start writing at the same moment
    for n in range(count):
        k = cache_key("openai", "https://h", "m", [{"role": "user", "content": f"{who} {n}"}])
        cache.put(k, ChatResult(content=f"from {who} {n}", model="m"))
    # Read what the other side wrote, as far as it got; report the count.
    other = "parent" if who == "child" else "child"
    seen = sum(
        cache.get(cache_key("openai", "https://h", "m", [{"role": "user", "content": f"{other} {n}"}]))
        is not None
        for n in range(count)
    )
    print(seen)
    cache.close()
""")


def test_two_processes_share_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    count = 300
    # Two separate processes write at the same time, then each reads the other's entries.
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(path), who, str(count)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for who in ("child", "parent")
    ]
    for child in children:
        assert child.stdout.readline() == "ready\n"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "WARNING" not in err and "Traceback" not in err
    # This process sees every entry both wrote: nothing was lost to a lock conflict.
    cache = SqliteCache(path)
    for who in ("child", "parent"):
        for n in range(count):
            k = cache_key("openai", "https://h", "m", [{"role": "user", "content": f"{who} {n}"}])
            hit = cache.get(k)
            assert hit is not None and hit.content == f"from {who} {n}"
    assert len(cache) == 2 * count
    cache.close()


def test_a_forked_child_opens_its_own_connection(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    path = tmp_path / "cache.sqlite"
    cache = SqliteCache(path)
    cache.put(key(), result("parent"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: use the inherited object, report through the pipe
        status = 1
        try:
            ok = cache.get(key()).content == "parent"
            cache.put(key(1), result("child"))
            status = 0 if ok else 1
        finally:
            os.write(write, bytes([status]))
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"\x00"
    os.waitpid(pid, 0)
    assert cache.get(key(1)).content == "child"
    cache.close()
