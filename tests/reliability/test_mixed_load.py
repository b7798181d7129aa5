"""Mixed load: 300 calls from 8 threads through one shared client while about a third of
the requests meet a transient fault. Every call must end with its own prompt's answer
(no cross-talk between threads), none may be lost, and none may be sent again after the
server answered it.

Faults come from two sources, so they land on arbitrary requests of arbitrary threads:
- the server's reply callable fails (HTTP 500) on the first arrival of every fifth prompt;
- a chaos thread queues one fault at a time (dropped connection, 502, 503, 429 with
  retry-after-ms), taken by whichever request comes next.
"""

import collections
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import pytest

from cowork_llm import create_llm_client
from cowork_llm.testing import FakeLlmServer

from ._helpers import SECRET_KEY

CALLS = 300
THREADS = 8
QUEUED_FAULTS = 60
ANSWERS_BETWEEN_FAULTS = 4


class Bookkeeper:
    """The server-side truth: arrivals per prompt, and when each was answered."""

    def __init__(self, flaky: set) -> None:
        self.flaky = flaky
        self.lock = threading.Lock()
        self.arrivals: Dict[str, int] = collections.Counter()
        self.answered_at: Dict[str, List[float]] = collections.defaultdict(list)
        self.raised = 0

    def reply(self, messages: List[Dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        with self.lock:
            self.arrivals[prompt] += 1
            if prompt in self.flaky and self.arrivals[prompt] == 1:
                self.raised += 1
                raise RuntimeError("injected failure")  # the server answers 500
            self.answered_at[prompt].append(time.monotonic())
        return f"answer to {prompt}"

    def answered_count(self) -> int:
        with self.lock:
            return len(self.answered_at)


def _chaos(server: FakeLlmServer, books: Bookkeeper, done: threading.Event) -> int:
    """Queue one transient fault at a time, the next only after a few more answers, until
    ``done`` or QUEUED_FAULTS were queued. (Queuing the next fault the moment the last
    was taken would hand a fast-retrying call fault after fault: the test would measure
    its own starvation, not the client.)"""
    rng = random.Random(7)
    faults = [lambda: server.drop_next(), lambda: server.fail_next(502),
              lambda: server.fail_next(503), lambda: server.fail_next(429, retry_after_ms=5)]
    queued = 0
    answered_when_queued = -ANSWERS_BETWEEN_FAULTS
    while queued < QUEUED_FAULTS and not done.is_set():
        answered = books.answered_count()
        if not server.pending_faults and answered - answered_when_queued >= ANSWERS_BETWEEN_FAULTS:
            rng.choice(faults)()
            queued += 1
            answered_when_queued = answered
        done.wait(0.001)
    return queued


@pytest.mark.timeout(60)
def test_300_calls_from_8_threads_under_transient_faults():
    prompts = [f"prompt-{i:03d}" for i in range(CALLS)]
    books = Bookkeeper(flaky=set(prompts[::5]))
    with FakeLlmServer(api_key=SECRET_KEY, reply=books.reply) as server:
        llm = create_llm_client(server.config(max_concurrent=THREADS, max_attempts=8))
        done = threading.Event()
        with ThreadPoolExecutor(1) as chaos_pool:
            chaos = chaos_pool.submit(_chaos, server, books, done)
            with ThreadPoolExecutor(THREADS) as pool:
                answers = dict(zip(prompts, pool.map(llm.generate_content, prompts), strict=True))
            done.set()
            queued = chaos.result()
        pending = len(server.pending_faults)
        requests = server.chat_requests
        llm.close()

    # Every call got its own prompt's answer: nothing lost, nothing crossed.
    assert answers == {p: f"answer to {p}" for p in prompts}
    # The faults were real and frequent: about a third of the calls met one.
    faults_served = books.raised + queued - pending
    assert books.raised == CALLS // 5
    assert faults_served >= 0.25 * CALLS, f"only {faults_served} faults were served"
    # Each prompt was answered by the server exactly once...
    assert {p: len(t) for p, t in books.answered_at.items()} == {p: 1 for p in prompts}
    # ...and nothing for it arrived after that answer.
    last_arrival = {}
    for request in requests:
        prompt = request.messages[-1]["content"]
        last_arrival[prompt] = max(last_arrival.get(prompt, 0.0), request.arrival_monotonic)
    late = [p for p in prompts if last_arrival[p] > books.answered_at[p][0]]
    assert late == [], f"sent again after the server answered: {late[:5]}"
    # Every request is accounted for: one success per prompt plus one per fault served.
    assert len(requests) == CALLS + faults_served
    # Several connections (threads) really took part, not one after another on one.
    assert len({r.client_port for r in requests}) >= 2
