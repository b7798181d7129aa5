"""Sockets and threads: a thread's session goes when the thread goes, and ``close()``
means closed — queued calls end at once, new calls are refused, calls in flight finish,
and nothing is left open.

Before: a program starting a short-lived thread per job ran out of file descriptors after
253 jobs under ``ulimit -n 256``; ``close()`` with 4 calls in flight and 46 queued let 169
more calls succeed and left 50 sessions open.
"""

import os
import subprocess
import sys
import threading
import time

import pytest

from cowork_llm import create_llm_client
from cowork_llm.errors import ClientClosedError, LlmError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

THREAD_PER_JOB = r"""
import resource, sys, threading
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
from cowork_llm import create_llm_client
from cowork_llm.testing import FakeLlmServer

with FakeLlmServer(api_key="sk-fd-test-0123456789") as server:
    llm = create_llm_client(server.config(max_attempts=1))
    failures = []

    def job(i):
        try:
            assert llm.chat([{"role": "user", "content": f"job {i}"}]).content == f"echo: job {i}"
        except Exception as error:  # each failure is reported, not only the first
            failures.append(repr(error))

    for i in range(2000):
        thread = threading.Thread(target=job, args=(i,))
        thread.start()
        thread.join()
    sessions = len(llm.inner._sessions)
    llm.close()
print(len(failures), sessions, failures[:3])
"""


@pytest.mark.slow
def test_two_thousand_short_lived_threads_under_a_low_file_limit():
    # A thread per job, one after another, 128 descriptors: each finished thread's
    # session (and its socket) must be closed, or job ~120 would fail with EMFILE.
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", THREAD_PER_JOB], capture_output=True, text=True,
                          timeout=170, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    failures, sessions, first = done.stdout.split(" ", 2)
    assert failures == "0", first
    assert int(sessions) <= 1  # only threads still alive hold one (none here)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_close_ends_queued_calls_refuses_new_ones_and_lets_in_flight_ones_finish(server):
    llm = create_llm_client(server.config(max_concurrent=4, max_attempts=3))
    llm.chat([{"role": "user", "content": "warm"}])  # imports and the first session, before counting
    llm.close()
    baseline = open_fds()
    llm = create_llm_client(server.config(max_concurrent=4, max_attempts=3))
    server.reset()
    server.delay_next(1.5, times=4)  # the first four are in flight while close() comes
    outcomes = {}
    lock = threading.Lock()

    def call(i):
        try:
            result = ("ok", llm.chat([{"role": "user", "content": f"call {i}"}]).content)
        except LlmError as error:
            result = (type(error).__name__, str(error))
        with lock:
            outcomes[i] = result + (time.monotonic(),)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    assert llm.limiter.wait_for_queued(46, timeout=20)
    deadline = time.monotonic() + 10
    while len(server.chat_requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a recorded fact, not sleeping for luck
    closed_at = time.monotonic()
    llm.close()
    with pytest.raises(ClientClosedError, match="closed"):
        llm.chat([{"role": "user", "content": "after close"}])
    for thread in threads:
        thread.join(30)
    finished = [o for o in outcomes.values() if o[0] == "ok"]
    refused = [o for o in outcomes.values() if o[0] == "ClientClosedError"]
    assert len(finished) == 4 and len(refused) == 46, sorted({o[0] for o in outcomes.values()})
    assert all("nothing was sent" in o[1] for o in refused)
    assert len(server.chat_requests) == 4  # nothing was sent after close()
    # The queued calls ended at once (the limiter looks every 0.1 s), before the calls in
    # flight (1.5 s at the server) finished.
    assert max(o[2] for o in refused) - closed_at < 1.2
    assert max(o[2] for o in refused) < min(o[2] for o in finished)
    assert len(llm.inner._sessions) == 0
    deadline = time.monotonic() + 5
    while open_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)  # sockets of the in-flight calls close as their threads let go
    assert open_fds() <= baseline


def test_a_closed_client_refuses_streams_too(server):
    llm = create_llm_client(server.config())
    llm.close()
    with pytest.raises(ClientClosedError):
        llm.stream([{"role": "user", "content": "hi"}])
    assert server.chat_requests == []


def test_close_is_an_llm_error_that_is_not_retried():
    from cowork_llm.retry import is_retryable

    assert issubclass(ClientClosedError, LlmError)
    assert not is_retryable(ClientClosedError("closed"))


README_CTRL_C = r"""
from concurrent.futures import ThreadPoolExecutor
from cowork_llm import create_llm_client

prompts = [f"prompt {i}" for i in range(40)]
# --- the README's recipe, as written there ---
llm = create_llm_client()
pool = ThreadPoolExecutor(8)
try:
    futures = [pool.submit(llm.generate_content, p) for p in prompts]
    answers = [f.result() for f in futures]
except KeyboardInterrupt:
    llm.close()                                   # queued calls end now, nothing more is sent
    pool.shutdown(wait=False, cancel_futures=True)  # jobs not started are dropped
    raise
finally:
    pool.shutdown()
    llm.close()
"""


@pytest.mark.slow
def test_the_readme_recipe_stops_a_thread_pool_promptly_on_ctrl_c(server):
    import signal

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    recipe = README_CTRL_C.split("# --- the README's recipe, as written there ---\n")[1]
    assert recipe.strip() in readme  # the test runs what the README shows
    env = dict(os.environ, **server.env(min_interval_seconds=0.5),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", README_CTRL_C], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(server.chat_requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a recorded fact: two requests have arrived
        sent_before = len(server.chat_requests)
        interrupted = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        child.kill()
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr, stderr[-2000:]
    assert took < 3.0  # not the 40 x 0.5 s the queue would take (57 s in the first round)
    assert len(server.chat_requests) <= sent_before + 1  # at most the one already admitted
