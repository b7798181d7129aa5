"""The whole stack under threads: create_llm_client → RateLimitedLlm → retry → OpenAI
provider → FakeLlmServer, with timing measured where the provider would see it.

About the jitter allowance: the limiter spaces admissions exactly (tests/rate_limiter/test_gate.py
checks that to the millisecond), but a request reaches the server some time after its
admission: building and sending it, then the server thread being scheduled. On this
2-core machine that delay varied between 0.8 and ~7 ms (measured with 8 client threads),
so two consecutive arrivals can be a few milliseconds closer than their admissions.
Start-to-start gaps at the server are therefore checked against ``interval - ARRIVAL_JITTER``.
"""

import logging
import signal
import threading
import time

import pytest

from cowork_llm import create_llm_client
from cowork_llm.errors import AuthenticationError, BadRequestError, LimiterAcquireError
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.testing import FakeLlmServer

KEY = "sk-integration-0123456789abcdef"
WAIT = 10.0
ARRIVAL_JITTER = 0.015


@pytest.fixture(autouse=True)
def _fresh_registry():
    _reset_global_rate_limiters()
    yield
    _reset_global_rate_limiters()


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as server:
        yield server


def run_threads(count, target):
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
        assert not thread.is_alive(), "a client thread is stuck"


def chat_arrivals(server):
    return sorted(r.arrival_monotonic for r in server.chat_requests)


def test_eight_threads_share_one_client_and_keep_the_interval(server):
    interval = 0.05
    client = create_llm_client(server.config(min_interval_seconds=interval))
    answers, lock = [], threading.Lock()

    def worker(i):
        for j in range(4):
            answer = client.generate_content(f"thread {i} call {j}")
            with lock:
                answers.append(answer)

    run_threads(8, worker)
    assert sorted(answers) == sorted(f"echo: thread {i} call {j}" for i in range(8) for j in range(4))
    gaps = server.arrival_gaps(server.CHAT_PATH)
    assert len(gaps) == 31
    assert min(gaps) >= interval - ARRIVAL_JITTER, gaps
    # Admission never ran ahead: the gaps average at least the interval.
    assert sum(gaps) / len(gaps) >= interval


def test_real_two_second_interval(server):
    client = create_llm_client(server.config(min_interval_seconds=2.0))
    started = time.monotonic()
    run_threads(3, lambda i: client.generate_content(f"call {i}"))
    arrivals = chat_arrivals(server)
    assert len(arrivals) == 3
    assert arrivals[0] - started < 1.0  # the first request does not wait
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= 2.0 - ARRIVAL_JITTER, gaps


def test_admission_is_fifo_at_the_server(server):
    client = create_llm_client(server.config(min_interval_seconds=0.01))
    held = client.limiter.acquire()  # everyone queues behind this
    threads = []
    for i in range(10):
        thread = threading.Thread(target=client.generate_content, args=(f"caller {i}",), daemon=True)
        thread.start()
        threads.append(thread)
        assert client.limiter.wait_for_queued(i + 1, WAIT)
    held.release()
    for thread in threads:
        thread.join(WAIT)
    prompts = [r.messages[-1]["content"] for r in server.chat_requests]
    assert prompts == [f"caller {i}" for i in range(10)]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
def test_server_errors_are_retried_to_success(server, status):
    client = create_llm_client(server.config(max_attempts=3))
    server.fail_next(status=status, times=2)
    assert client.generate_content("again") == "echo: again"
    assert len(server.chat_requests) == 3


def test_a_dropped_connection_is_retried_to_success(server):
    client = create_llm_client(server.config(max_attempts=3))
    server.drop_next()
    assert client.generate_content("after a drop") == "echo: after a drop"
    assert len(server.chat_requests) == 2


def test_retry_after_is_honoured_and_pauses_the_other_threads(server):
    client = create_llm_client(server.config(min_interval_seconds=0.01, max_attempts=3))
    server.fail_next(status=429, retry_after=0.4)
    answers = []
    run_threads(4, lambda i: answers.append(client.generate_content(f"p{i}")))
    assert sorted(answers) == [f"echo: p{i}" for i in range(4)]
    requests = sorted(server.chat_requests, key=lambda r: r.arrival_monotonic)
    assert len(requests) == 5  # one 429, then the retry and the three others
    throttled = requests[0].arrival_monotonic
    # The pause starts when the client reads the 429, after the server recorded it, so
    # every later arrival is at least Retry-After later: no jitter allowance needed.
    assert all(r.arrival_monotonic >= throttled + 0.4 for r in requests[1:])


@pytest.mark.parametrize("status, error", [(400, BadRequestError), (401, AuthenticationError)])
def test_client_errors_are_not_retried(server, status, error, caplog):
    client = create_llm_client(server.config(max_attempts=5))
    server.fail_next(status=status)
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"), pytest.raises(error) as raised:
        client.generate_content("secret prompt text")
    assert raised.value.attempts == 1
    assert len(server.chat_requests) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"status={status}" in errors[0].getMessage()
    assert KEY not in caplog.text


def test_a_wrong_key_is_a_401_and_never_logged(server, caplog):
    wrong = "sk-wrong-key-0123456789abcdef"
    client = create_llm_client(server.config(api_key=wrong))
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"), pytest.raises(AuthenticationError) as raised:
        client.generate_content("hello")
    assert len(server.chat_requests) == 1
    assert wrong not in caplog.text and wrong not in str(raised.value)


def test_limiter_timeout_while_a_slow_request_holds_the_slot(server):
    client = create_llm_client(server.config(acquire_timeout_seconds=0.2))
    server.delay_next(1.0)
    slow = threading.Thread(target=client.generate_content, args=("slow",), daemon=True)
    slow.start()
    server.wait_for_requests(1, WAIT)
    with pytest.raises(LimiterAcquireError, match=r"after waiting 0\.2\d s.*1 requests were queued"):
        client.generate_content("impatient")
    slow.join(WAIT)
    assert [r.messages[-1]["content"] for r in server.chat_requests] == ["slow"]
    assert client.generate_content("later") == "echo: later"


@pytest.fixture
def default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_waiting_leaves_the_client_usable(server, default_sigint):
    client = create_llm_client(server.config(min_interval_seconds=0.01))
    server.delay_next(1.0)
    slow = threading.Thread(target=client.generate_content, args=("slow",), daemon=True)
    slow.start()
    server.wait_for_requests(1, WAIT)
    main = threading.main_thread().ident

    def interrupt():
        assert client.limiter.wait_for_queued(1, WAIT)
        signal.pthread_kill(main, signal.SIGINT)

    killer = threading.Thread(target=interrupt, daemon=True)
    killer.start()
    with pytest.raises(KeyboardInterrupt):
        client.generate_content("interrupted")
    killer.join(WAIT)
    slow.join(WAIT)
    assert client.limiter.queued == 0 and client.limiter.in_flight == 0
    assert client.generate_content("after") == "echo: after"
    assert [r.messages[-1]["content"] for r in server.chat_requests] == ["slow", "after"]
