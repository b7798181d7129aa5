"""Where the shared backends keep what was learned from the provider: a row of the sqlite
file, a key of Redis. Members of one group (separate backends, as separate processes
would have) obey what any of them learned, no update is lost when they write at the same
moment, an unreadable view starts afresh instead of failing calls, and on Redis the
view is on Redis's clock and is forgotten after a day."""

import sqlite3
import threading
import time

import pytest
import redis
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterBackendError
from cowork_llm.limits import DimensionReport, LimitReport
from cowork_llm.rate_limiter._provider_view import ProviderView
from cowork_llm.rate_limiter.backends import _provider_store as store_module
from cowork_llm.rate_limiter.backends import build_backend

ONE = {"requests": 1.0}


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def where(request, tmp_path):
    if request.param == "sqlite":
        return {"backend": "sqlite", "path": str(tmp_path / "limits.sqlite")}
    return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture
def make_member(where, request):
    """Backends of one group (one key per test), each standing for another process."""
    made = []
    key = f"view-{request.node.name}"

    def make():
        config = RateLimitConfig(min_interval_seconds=0, key=key, **where)
        backend = build_backend(config)
        made.append(backend)
        return ProviderView(config, backend), backend

    yield make
    for backend in made:
        backend.close()


def report(remaining, limit, reset):
    return LimitReport("openai", (DimensionReport("requests", remaining, limit, reset),))


def test_what_one_member_learned_holds_another(make_member):
    (first, _), (second, _) = make_member(), make_member()
    assert second.wait(ONE) == 0.0
    _, marks = first.admit(ONE)
    # 60 a minute, nothing left, full again in 600 s: one every 10 s
    first.observe(report(0, 60, 600.0), marks=marks, demand=ONE, used=None)
    # second has not looked since; its admission looks, atomically: not admitted,
    # nothing charged...
    wait, marks = second.admit(ONE)
    assert 9.0 <= wait <= 10.0 and marks == {}
    assert 9.0 <= second.wait(ONE) <= 10.0  # ...and from now on it looks before each ask
    assert second.learned()["requests"].limit == 60


def test_admissions_by_different_members_are_all_counted(make_member):
    members = [make_member()[0] for _ in range(3)]
    _, marks = members[0].admit(ONE)
    members[0].observe(report(10, 60, 6000.0), marks=marks, demand=ONE, used=None)
    admitted = 0
    for _ in range(6):
        for member in members:
            admitted += member.admit(ONE)[0] == 0.0
    assert admitted == 10  # the 10 the provider said were left, across the group
    assert members[2].learned()["requests"].level < 1


def test_no_update_is_lost_when_members_write_at_once(make_member):
    backends = [make_member()[1] for _ in range(4)]

    def count(state, now):
        state["n"] = state.get("n", 0) + 1

    def hammer(backend):
        for _ in range(50):
            backend.update_provider_view(count)

    threads = [threading.Thread(target=hammer, args=(b,)) for b in backends for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert backends[0].update_provider_view(lambda state, now: state["n"], read_only=True) == 400


def test_a_read_only_look_writes_nothing(make_member):
    (_, backend), (_, other) = make_member(), make_member()

    def scribble(state, now):
        state["scribbled"] = True  # a reader that breaks the contract: must not be stored

    backend.update_provider_view(scribble, read_only=True)
    assert other.update_provider_view(lambda state, now: dict(state), read_only=True) == {}


def test_the_view_is_stored_as_it_was_left(make_member):
    (_, first), (_, second) = make_member(), make_member()
    first.update_provider_view(lambda state, now: state.update(a=1.5, b={"c": [1, 2]}))
    assert second.update_provider_view(lambda state, now: dict(state), read_only=True) == {
        "a": 1.5, "b": {"c": [1, 2]}}


def test_the_result_of_an_update_is_returned(make_member):
    _, backend = make_member()
    assert backend.update_provider_view(lambda state, now: ("seen", dict(state))) == ("seen", {})
    assert backend.update_provider_view(lambda state, now: state.setdefault("x", 7)) == 7
    assert backend.update_provider_view(lambda state, now: state.get("x"), read_only=True) == 7


def test_the_store_clock_is_now(make_member):
    _, backend = make_member()
    now = backend.update_provider_view(lambda state, now: now, read_only=True)
    assert abs(now - time.time()) < 2


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", "17"])
def test_an_unreadable_stored_view_starts_afresh(where, garbage, caplog):
    config = RateLimitConfig(min_interval_seconds=0, key="garbled", **where)
    backend = build_backend(config)
    try:
        backend.update_provider_view(lambda state, now: state.update(n=1))
        if where["backend"] == "sqlite":
            with sqlite3.connect(where["path"]) as conn:
                conn.execute("UPDATE cowork_llm_provider_view SET state = ?", (garbage,))
        else:
            client = redis.Redis.from_url(where["redis_url"])
            [key] = client.keys("*garbled*provider_view")
            client.set(key, garbage)
        view = ProviderView(config, backend)
        caplog.set_level("DEBUG", logger="cowork_llm.rate_limiter.backends._provider_store")
        assert view.wait(ONE) == 0.0 and view.learned() == {}
        assert "provider view unreadable; starting afresh" in caplog.text
        _, marks = view.admit(ONE)
        view.observe(report(5, 10, 1000.0), marks=marks, demand=ONE, used=None)
        assert view.learned()["requests"].level == pytest.approx(5, abs=0.1)
    finally:
        backend.close()


@pytest.mark.redis
def test_redis_forgets_a_view_nobody_updated_for_a_day(redis_url):
    backend = build_backend(RateLimitConfig(min_interval_seconds=0, key="ttl", backend="redis",
                                            redis_url=redis_url))
    try:
        backend.update_provider_view(lambda state, now: state.update(n=1))
        client = redis.Redis.from_url(redis_url)
        [key] = client.keys("*ttl*provider_view")
        assert 23.9 * 3600 * 1000 < client.pttl(key) <= 24 * 3600 * 1000
    finally:
        backend.close()


@pytest.mark.redis
def test_redis_members_on_skewed_hosts_share_redis_clock(redis_url, monkeypatch):
    client = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(store_module.time, "time", lambda: 1_000.0)  # a host clock gone wrong
    now = store_module.redis_update(client, "skew:view", lambda state, now: now, read_only=True)
    seconds, micros = client.time()
    assert abs(now - (seconds + micros / 1e6)) < 2
    # where a managed Redis refuses TIME in scripts, the host's clock is used instead
    assert store_module.redis_update(client, "skew:view", lambda state, now: now,
                                     read_only=True, redis_clock=False) == 1_000.0


@pytest.mark.redis
def test_a_member_that_loses_every_race_gives_up_with_a_clear_error(redis_url):
    client, rival = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    calls = []

    def update(state, now):
        calls.append(now)
        rival.set("race:view", f'{{"n": {len(calls)}}}')  # another member writes in between
        state["mine"] = True

    with pytest.raises(LimiterBackendError, match="race:view.*overloaded"):
        store_module.redis_update(client, "race:view", update)
    assert len(calls) == store_module._REDIS_ATTEMPTS
    assert client.get("race:view") == f'{{"n": {len(calls)}}}'.encode()


@pytest.mark.redis
def test_a_member_that_lost_one_race_runs_its_update_again_on_the_newer_view(redis_url):
    client, rival = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    rival.delete("retry:view")
    seen = []

    def add_one(state, now):
        seen.append(dict(state))
        if len(seen) == 1:
            rival.set("retry:view", '{"n": 10}')  # written between our read and our write
        state["n"] = state.get("n", 0) + 1
        return state["n"]

    assert store_module.redis_update(client, "retry:view", add_one) == 11
    assert seen == [{}, {"n": 10}]
    assert client.get("retry:view") == b'{"n":11}'


def test_a_view_lost_between_admission_and_answer_is_learned_again_from_the_answer(where):
    """A Redis restart or a deleted file between a request's admission and its answer:
    the answer's headers still teach the group."""
    config = RateLimitConfig(min_interval_seconds=0, key="lost", **where)
    backend = build_backend(config)
    try:
        view = ProviderView(config, backend)
        _, marks = view.admit(ONE)
        if where["backend"] == "sqlite":
            with sqlite3.connect(where["path"]) as conn:
                conn.execute("DELETE FROM cowork_llm_provider_view")
        else:
            redis.Redis.from_url(where["redis_url"]).flushall()
        view.observe(report(7, 10, 1000.0), marks=marks, demand=ONE, used=None)
        assert view.learned()["requests"].level == pytest.approx(7, abs=0.1)
    finally:
        backend.close()


def test_only_an_unreadable_view_is_called_unreadable(where, caplog):
    caplog.set_level("DEBUG", logger="cowork_llm.rate_limiter.backends._provider_store")
    config = RateLimitConfig(min_interval_seconds=0, key="fresh", **where)
    backend = build_backend(config)
    try:
        view = ProviderView(config, backend)
        _, marks = view.admit(ONE)
        view.observe(report(7, 10, 10.0), marks=marks, demand=ONE, used=None)
        view.learned()
        assert caplog.records == []
    finally:
        backend.close()


@pytest.mark.redis
@pytest.mark.parametrize("decode", [False, True])
def test_the_host_clock_fallback_keeps_the_view_as_the_redis_clock_does(redis_url, decode):
    """Where a managed Redis refuses TIME in scripts, the view is still read, updated and
    kept (with a client that answers bytes or text)."""
    client = redis.Redis.from_url(redis_url, decode_responses=decode)
    key = f"fallback:{decode}:view"
    client.delete(key)

    def add_one(state, now):
        state["n"] = state.get("n", 0) + 1
        return state["n"]

    assert store_module.redis_update(client, key, add_one, redis_clock=False) == 1
    assert store_module.redis_update(client, key, add_one, redis_clock=False) == 2
    assert store_module.redis_update(client, key, lambda state, now: dict(state),
                                     read_only=True, redis_clock=False) == {"n": 2}
