"""cowork_llm.providers._sessions: the transport check, socket timeouts, a session per thread."""

import threading

import pytest
import requests

from cowork_llm._version import __version__
from cowork_llm.errors import ConfigError
from cowork_llm.providers import _sessions

# --- transport -------------------------------------------------------------------------


@pytest.mark.parametrize("base_url, host", [
    ("http://127.0.0.1:8080/v1", "127.0.0.1"),
    ("http://127.3.4.5/v1", "127.3.4.5"),
    ("http://[::1]:9000/v1", "::1"),
    ("http://localhost:11434/v1", "localhost"),
    ("https://api.openai.com/v1", "api.openai.com"),
])
def test_https_and_loopback_are_allowed(base_url, host):
    _sessions.check_transport(base_url, host, False, key="llm.model")


@pytest.mark.parametrize("base_url, host", [
    ("http://api.example.com/v1", "api.example.com"),
    ("http://10.0.0.5/v1", "10.0.0.5"),
    ("http://localhost.evil.com/v1", "localhost.evil.com"),
    ("http://128.0.0.1/v1", "128.0.0.1"),
])
def test_plain_http_to_the_network_is_refused(base_url, host):
    with pytest.raises(ConfigError) as info:
        _sessions.check_transport(base_url, host, False, key="llm.model")
    text = str(info.value)
    assert "https://" in text and "llm.model.allow_insecure_http" in text


def test_allow_insecure_http_opts_out():
    _sessions.check_transport("http://api.example.com/v1", "api.example.com", True, key="llm.model")


@pytest.mark.parametrize("timeout, expected", [(60.0, (10.0, 60.0)), (3.0, (3.0, 3.0))])
def test_connect_timeout_is_capped_at_ten_seconds(timeout, expected):
    assert _sessions.request_timeouts(timeout) == expected


# --- sessions --------------------------------------------------------------------------


def test_session_per_thread_and_close_closes_all(monkeypatch):
    pool = _sessions.SessionPool()
    closed = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(id(self)))
    seen = {}
    barrier = threading.Barrier(17)
    done = threading.Event()

    def work(i):
        barrier.wait()  # all threads alive at once, so no thread ident is reused
        for _ in range(50):
            session = pool.get()
            assert pool.get() is session
        seen[i] = session
        barrier.wait()
        done.wait(10)  # alive until the pool has been closed

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    barrier.wait()
    barrier.wait()
    assert len({id(s) for s in seen.values()}) == 16
    assert len(pool) == 16
    assert all(s.headers["User-Agent"] == f"cowork-llm/{__version__}" for s in seen.values())
    ours = sorted(id(s) for s in seen.values())
    pool.close()
    assert sorted(c for c in closed if c in ours) == ours  # (other tests' sessions may close meanwhile)
    pool.close()  # twice is fine
    done.set()
    for t in threads:
        t.join()
    assert sorted(c for c in closed if c in ours) == ours  # the threads' ends close nothing twice


def test_the_session_of_a_finished_thread_is_closed(monkeypatch):
    pool = _sessions.SessionPool()
    closed = []
    real_close = requests.Session.close
    monkeypatch.setattr(requests.Session, "close", lambda self: (closed.append(id(self)), real_close(self)))
    sessions = []
    for _ in range(20):
        t = threading.Thread(target=lambda: sessions.append(pool.get()))
        t.start()
        t.join()
    ours = {id(s) for s in sessions}
    assert sorted(c for c in closed if c in ours) == sorted(ours)  # each closed as its thread ended
    assert len(pool) == 0
    mine = pool.get()  # a live thread keeps its one session
    assert pool.get() is mine and len(pool) == 1


def test_a_thread_gets_a_fresh_session_after_close():
    pool = _sessions.SessionPool()
    first = pool.get()
    pool.close()
    second = pool.get()
    assert second is not first and len(pool) == 1


@pytest.mark.parametrize("url", ["https://api.openai.com/v1/chat/completions", "http://127.0.0.1:8080/v1"])
def test_https_and_http_connections_alike_are_ones_a_deadline_can_cut(url):
    from cowork_llm.providers._guard import GuardedAdapter

    with _sessions.new_session() as session:
        assert isinstance(session.get_adapter(url), GuardedAdapter)
