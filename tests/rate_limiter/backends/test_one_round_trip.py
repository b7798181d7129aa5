"""The shared backends' hot path: one ask per admission when processes take turns (a
start reserved up to the horizon ahead), one SQLite transaction per ask, the Redis ask
on a connection of its own that survives a lost script cache and a dropped
connection, and the view's charge starting from what the ask read. What these cut
is CPU per admission (BENCHMARKS.md, "Limiter at scale"); the tests count the work."""

import threading

import pytest
from _redis_server import redis_server

from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import LimiterBackendError
from cowork_llm.limits import DimensionReport, LimitReport
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter._provider_view import demand_for
from cowork_llm.rate_limiter.backends import build_backend

DEMAND = demand_for(8, 100)


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


def limiter_maker(request, tmp_path, kind):
    """Limiters on one shared limit, each with a backend of its own: the members a
    group of processes would be. Closed at the end of the test."""
    where = {"sqlite": {"backend": "sqlite", "path": str(tmp_path / "l.sqlite")}}
    if kind == "redis":
        where["redis"] = {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    made = []

    def make(**settings):
        settings.setdefault("key", f"trip-{request.node.name}")
        config = RateLimitConfig(**where[kind], **settings)
        limiter = RateLimiter(config, backend=build_backend(config))
        made.append(limiter)
        return limiter

    request.addfinalizer(lambda: [limiter.close() for limiter in made])
    return make


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def make_limiter(request, tmp_path):
    make = limiter_maker(request, tmp_path, request.param)
    make.kind = request.param
    return make


@pytest.fixture
def make_sqlite_limiter(request, tmp_path):
    return limiter_maker(request, tmp_path, "sqlite")


@pytest.fixture
def make_redis_limiter(request, tmp_path):
    return limiter_maker(request, tmp_path, "redis")


def counting_asks(limiter):
    """Count the limiter's asks to its backend."""
    asks = [0]
    ask = limiter.backend.try_acquire

    def counted(*args, **kwargs):
        asks[0] += 1
        return ask(*args, **kwargs)

    limiter.backend.try_acquire = counted
    return asks


def asks_per_admission(members, per_member):
    """Every member takes ``per_member`` slots from its own thread, all starting
    together; (asks to the backends, admissions)."""
    asks = [counting_asks(member) for member in members]
    go = threading.Barrier(len(members))

    def work(limiter):
        go.wait()
        for _ in range(per_member):
            with limiter.slot():
                pass

    threads = [threading.Thread(target=work, args=(member,)) for member in members]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return sum(count[0] for count in asks), len(members) * per_member


def test_members_taking_turns_ask_once_per_admission(make_limiter):
    # Each member's next head asks when its previous start comes; by then the other
    # member holds the next slot, so its own lies two intervals on: within the horizon,
    # reserved by that one ask. (Reserving only within the 5 ms lead took two asks.)
    members = [make_limiter(min_interval_seconds=0.02) for _ in range(2)]
    total, admissions = asks_per_admission(members, 12)
    assert admissions <= total <= 1.5 * admissions, f"{total} asks for {admissions} admissions"


def test_turns_longer_than_the_horizon_still_take_one_ask_per_admission(make_limiter):
    # Four members at 50 ms: each one's next slot lies 200 ms on, past the 100 ms
    # horizon. Each learns to first ask about then (a few admissions to learn it).
    members = [make_limiter(min_interval_seconds=0.05) for _ in range(4)]
    total, admissions = asks_per_admission(members, 8)
    assert admissions <= total <= 1.5 * admissions, f"{total} asks for {admissions} admissions"


def test_a_start_beyond_the_horizon_is_waited_for_not_reserved(make_limiter):
    first, second = make_limiter(min_interval_seconds=0.5), make_limiter(min_interval_seconds=0.5)
    assert first.backend.try_acquire(1, 0, 0.1) == 0.0
    wait = second.backend.try_acquire(1, 0, 0.1)
    assert 0.39 < wait <= 0.506  # told to wait: nothing recorded 0.5 s ahead
    assert 0.39 < second.backend.try_acquire(1, 0, 0.1) <= 0.506  # still nothing recorded


def test_a_reservation_is_one_put_and_the_minute_rate_still_binds(make_sqlite_limiter):
    # The first free instant comes from the log (one read), so the bucket is asked once;
    # its own check still refuses what the log's reading would let through.
    backend = make_sqlite_limiter(min_interval_seconds=0.02, requests_per_minute=3).backend
    puts = []
    put = backend._put_request
    backend._put_request = lambda item: puts.append(item.timestamp) or put(item)
    starts = [-backend.try_acquire(1, 0, 0.1) for _ in range(3)]
    assert starts[0] == 0.0 and 0.015 < starts[1] < starts[2] <= 0.041
    assert len(puts) == 3  # one each, two of them reservations
    wait = backend.try_acquire(1, 0, 0.1)
    assert 59 < wait <= 60.1  # the minute's three are spent: nothing reserved
    assert len(puts) == 3


def test_an_ask_is_one_transaction_with_the_views_charge(make_sqlite_limiter):
    limiter = make_sqlite_limiter(min_interval_seconds=0.001)
    with limiter.slot(demand=DEMAND):  # the tables exist, the view holds its counters
        pass
    statements = []
    limiter.backend._conn.set_trace_callback(statements.append)
    for _ in range(5):
        with limiter.slot(demand=DEMAND) as slot:
            pass
        limiter.observe(slot, None, None)
    commits = [s for s in statements if s.strip().upper().startswith("COMMIT")]
    assert len(commits) == 5, statements  # one per admission (four before)


def test_an_ask_interrupted_after_recording_its_start_keeps_nothing(make_sqlite_limiter, monkeypatch):
    # (On Redis the start stays recorded: a lost slot, never an excess.)
    limiter = make_sqlite_limiter(min_interval_seconds=60.0)

    def failing_charge(demand):
        raise LimiterBackendError("the store failed after the start was recorded")

    monkeypatch.setattr(limiter.provider_view, "admit", failing_charge)
    with pytest.raises(LimiterBackendError):
        limiter.acquire(demand=DEMAND)
    # The whole ask was rolled back: the next start is not held a minute for it.
    assert limiter.backend.try_acquire() == 0.0


def counting_view_scripts(backend):
    read, cas = backend._view_scripts
    calls = {"read": 0, "cas": 0}

    def counted(name, script):
        def call(*args, **kwargs):
            calls[name] += 1
            return script(*args, **kwargs)
        return call

    backend._view_scripts = (counted("read", read), counted("cas", cas))
    return calls


@pytest.mark.redis
def test_while_nothing_is_learned_the_ask_charges_the_view_itself(make_redis_limiter):
    limiter, other = make_redis_limiter(min_interval_seconds=0.001), make_redis_limiter()
    calls = counting_view_scripts(limiter.backend)
    marks = []
    for _ in range(4):
        with limiter.slot(demand=DEMAND) as slot:
            marks.append(slot.marks)
    assert calls == {"read": 0, "cas": 0}  # no round trip besides the ask
    assert marks == [{name: n * need for name, need in DEMAND.items()} for n in (1, 2, 3, 4)]
    # The counters are the view's own: another member's model reads and extends them.
    charged = other.backend.update_provider_view(lambda state, now: dict(state["charged"]), read_only=True)
    assert charged == {name: 4 * need for name, need in DEMAND.items()}
    assert other.provider_view.admit(DEMAND)[1]["requests"] == 5


@pytest.mark.redis
def test_once_a_limit_is_learned_the_charge_starts_from_what_the_ask_read(make_redis_limiter):
    limiter = make_redis_limiter(min_interval_seconds=0.001)
    with limiter.slot(demand=DEMAND) as slot:
        pass
    report = LimitReport("openai", (DimensionReport("requests", 1000, 999, 60.0),))
    limiter.observe(slot, report)
    calls = counting_view_scripts(limiter.backend)
    for _ in range(4):
        with limiter.slot(demand=DEMAND):
            pass
    # Per admission: the look before the ask, and the charge's compare-and-set; the
    # charge reads nothing (the ask brought the view along).
    assert calls == {"read": 4, "cas": 4}
    level = limiter.limits().learned["requests"].level
    assert 995 <= level < 996  # 999 less the four charged, plus a refill of 1000/min meanwhile


@pytest.mark.redis
def test_the_redis_ask_survives_a_lost_script_cache_and_a_dropped_connection(make_redis_limiter):
    import redis

    limiter = make_redis_limiter(min_interval_seconds=0.001)
    admin = redis.Redis.from_url(limiter.config.redis_url)
    try:
        with limiter.slot():
            pass
        admin.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
        with limiter.slot():
            pass
        admin.client_kill_filter(_type="normal", skipme=True)  # every other connection
        with limiter.slot():
            pass
    finally:
        admin.close()
    assert limiter.admitted_count == 3


def test_close_closes_the_connections_kept_for_the_hot_path(make_limiter):
    limiter = make_limiter(min_interval_seconds=0.001)
    with limiter.slot(demand=DEMAND):
        pass
    backend = limiter.backend
    limiter.close()
    if make_limiter.kind == "redis":
        assert [call.connection for call in (backend._acquire, *backend._view_scripts)] == [None] * 3
    else:
        assert backend._lock.lock._idle_fd is None  # the lock file's descriptor
