"""The redis limiter backend against a real redis-server started for this module: one
limit per (server, key) across backends (each stands for a process or host), the shared
pause, Redis down or restarted, and the password never shown."""

import logging
import threading
import time

import pytest
from _redis_server import free_port, redis_server

from cowork_llm.config import RateLimitConfig, mask_url_password
from cowork_llm.errors import ConfigError, LimiterBackendError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter.backends import build_backend
from cowork_llm.rate_limiter.backends.redis import RedisBackend

pytestmark = pytest.mark.redis

PASSWORD = "s3cret-redis-pw"


@pytest.fixture(scope="module")
def redis_url():
    with redis_server(password=PASSWORD) as url:
        yield url


@pytest.fixture
def make_backend(redis_url, request):
    made = []
    key = f"test-{request.node.name}"  # a fresh limit per test on the shared server

    def make(**settings):
        settings.setdefault("min_interval_seconds", 1.0)
        settings.setdefault("key", key)
        backend = build_backend(RateLimitConfig(backend="redis", redis_url=redis_url, **settings))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def test_two_members_share_one_interval(make_backend):
    first, second = make_backend(), make_backend()
    assert isinstance(first, RedisBackend)
    assert first.try_acquire() == 0.0
    assert 0.9 < second.try_acquire() <= 1.02
    assert make_backend(key="another-key").try_acquire() == 0.0


def record_admissions(backend, admitted):
    """Wrap the backend's ask script: append the Redis time of each admission."""
    ask = backend._acquire

    def recording(**kwargs):
        answer = ask(**kwargs)
        if int(answer[0]) == 0:
            admitted.append((float(answer[2]) + float(answer[1])) / 1000)  # now + reservation
        return answer

    backend._acquire = recording


def test_on_the_host_clock_fallback_members_still_share_one_interval(make_backend):
    first, second = make_backend(), make_backend()
    for member in (first, second):
        member._host_clock = True  # what a server forbidding TIME in scripts gets
    assert first.try_acquire() == 0.0
    assert 0.9 < second.try_acquire() <= 1.02


@pytest.mark.parametrize("refusal", [
    "Write commands not allowed after non deterministic commands",  # Redis before 5
    "ERR This Redis command is not allowed from script: time",  # a managed service's own
])
def test_a_server_forbidding_time_in_scripts_falls_back_to_host_clocks_with_a_warning(
        make_backend, monkeypatch, caplog, refusal):
    import redis

    def refuse(*args, **kwargs):
        raise redis.ResponseError(refusal)

    monkeypatch.setattr(redis.Redis, "eval", refuse)
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        backend = make_backend()
    assert backend._host_clock and "synchronised clocks" in caplog.text
    assert backend.try_acquire() == 0.0


def test_the_pause_key_expires_with_the_pause(make_backend):
    first, second = make_backend(min_interval_seconds=0), make_backend(min_interval_seconds=0)
    first.pause(0.2)
    limiter = RateLimiter(second.config, backend=second)
    with limiter.slot():  # admitted once the pause is over (the pause itself: shared contract)
        pass
    # The key expires with the pause (give or take Redis's own timer), never lingers.
    assert first._client.pttl(first._keys['pause']) <= 50


def test_threads_of_two_members_keep_the_interval(make_backend):
    interval = 0.02
    limiters = [RateLimiter(b.config, backend=b) for b in
                (make_backend(min_interval_seconds=interval) for _ in range(2))]
    admitted = []  # measured at admission, on Redis's clock
    for limiter in limiters:
        record_admissions(limiter.backend, admitted)

    def worker(limiter):
        for _ in range(4):
            with limiter.slot():
                pass

    threads = [threading.Thread(target=worker, args=(limiters[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(admitted) == 32
    admitted.sort()
    gaps = [b - a for a, b in zip(admitted, admitted[1:], strict=False)]
    assert min(gaps) >= interval, sorted(gaps)[:3]


def test_scripts_flushed_by_a_restart_are_loaded_again(make_backend):
    backend = make_backend(min_interval_seconds=0.01)
    backend._client.script_flush()  # what a restarted Redis looks like to a client
    assert backend.try_acquire() == 0.0


@pytest.mark.parametrize("form", ["redis://:{pw}@127.0.0.1:{port}/0", "redis://{pw}@127.0.0.1:{port}/0",
                                  "redis://127.0.0.1:{port}/0?password={pw}"])
def test_redis_down_is_an_error_naming_the_url_without_its_password(form):
    port = free_port()
    url = form.format(pw=PASSWORD, port=port)
    with pytest.raises(LimiterBackendError) as caught:
        build_backend(RateLimitConfig(backend="redis", redis_url=url))
    text = str(caught.value)
    assert PASSWORD not in text and PASSWORD not in repr(caught.value)
    assert f"127.0.0.1:{port}" in text and "***" in text
    # What went wrong, in redis-py's words, and what to do about it.
    assert f"failed: ConnectionError: Error 111 connecting to 127.0.0.1:{port}. Connection refused" in text
    assert text.endswith("Check that Redis is running and reachable from this host; requests are "
                         "not sent without their limit")


def test_redis_going_away_later_is_an_error_not_a_fallback():
    with redis_server() as url:
        backend = build_backend(RateLimitConfig(backend="redis", redis_url=url, min_interval_seconds=0.01))
        assert backend.try_acquire() == 0.0
    with pytest.raises(LimiterBackendError, match="redis://127.0.0.1"):
        backend.try_acquire()
    with pytest.raises(LimiterBackendError):
        backend.pause(1)
    backend.close()


def test_wrong_password_is_an_error_without_the_password(redis_url):
    wrong = redis_url.replace(PASSWORD, "wrong-pw-123")
    with pytest.raises(LimiterBackendError) as caught:
        build_backend(RateLimitConfig(backend="redis", redis_url=wrong))
    assert "wrong-pw-123" not in str(caught.value) and ":***@" in str(caught.value)


def test_a_malformed_url_is_a_config_error():
    with pytest.raises(ConfigError, match="redis_url"):
        build_backend(RateLimitConfig(backend="redis", redis_url="http://:pw-xyz@host/0"))


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
    ("rediss://user:pw@h/2", "rediss://user:***@h/2"),
    ("redis://h:6379", "redis://h:6379"),
    # A lone user-info is often a password without its colon: masked too.
    ("redis://PW-lone@h", "redis://***@h"),
    ("redis://h:1/0?password=pw-q&db=2", "redis://h:1/0?password=***&db=2"),
    ("rediss://u@h/0?ssl_password=k-pw", "rediss://***@h/0?ssl_password=***"),
    ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
])
def test_mask_url_password(url, shown):
    assert mask_url_password(url) == shown


def test_the_description_and_the_limiter_repr_hide_the_password(make_backend):
    backend = make_backend()
    limiter = RateLimiter(backend.config, backend=backend)
    assert PASSWORD not in backend.description and PASSWORD not in repr(limiter)


def test_a_member_behind_is_woken_by_the_admission_ahead_and_sleeps_until_its_turn(make_backend):
    first, second = make_backend(min_interval_seconds=0.3), make_backend(min_interval_seconds=0.3)
    second.await_fallback_seconds = 5.0  # so only a wake-up can end its wait early
    assert first.try_acquire() == 0.0
    assert first.try_acquire() > 0.2  # the front of the queue, waiting for the interval
    assert first.await_turn(0.3) is False  # a plain wait: the gate sleeps for it itself
    behind = {}

    def wait_behind():  # another process's head: asks, is behind, waits for its turn
        behind["answer"] = second.try_acquire()
        behind["started"] = time.monotonic()
        behind["woke"] = second.await_turn(5.0)
        behind["returned"] = time.monotonic()
        behind["then"] = second.try_acquire(lead=0.05)
    waiter = threading.Thread(target=wait_behind)
    waiter.start()
    time.sleep(0.35)
    asked = time.monotonic()
    assert first.try_acquire() == 0.0
    waiter.join(10)
    assert behind["answer"] == 5.0  # behind first: block on the wake-up, bounded
    assert behind["woke"] is True
    # Woken by that admission (long before the 5 s bound), then asleep until the
    # reservation lead (5 ms) before its own slot, one interval after first's start.
    assert behind["returned"] - behind["started"] < 4.0
    assert behind["returned"] >= asked + 0.3 - 0.005 - 0.002, behind["returned"] - asked
    # Then its slot is at most a few ms away (the sleep is on an estimate of Redis's
    # clock): an ask with a 50 ms lead is admitted or reserved.
    assert behind["then"] <= 0.0


def test_the_group_clock_is_redis_time_even_on_a_host_whose_clock_is_wrong(make_backend, monkeypatch):
    backend = make_backend()
    assert backend.try_acquire() == 0.0
    seconds, micros = backend._client.time()
    redis_now = seconds + micros / 1e6
    monkeypatch.setattr(time, "time", lambda: 1_000.0)  # this host's wall clock gone wrong
    fresh = make_backend()  # from the start, before its first ask
    assert abs(fresh.clock() - redis_now) < 1
    assert abs(backend.clock() - redis_now) < 1  # in seconds, on Redis's clock
    view_now = backend.update_provider_view(lambda state, now: now, read_only=True)
    assert abs(view_now - redis_now) < 1  # what is learned is dated on Redis's clock too
