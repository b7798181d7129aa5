"""A hostile server cannot hold a call longer than its configured bounds, grow the client's
memory without bound, or get a vague error back.

Each case runs the call in a fresh Python process (so its peak RSS, ``ru_maxrss``, is the
call's own) against :class:`HostileServer`, a raw-socket server that drips bytes, never
ends, inflates, loops or lies about its encoding. Each asserts three things: the call
ended within its bound (with slack for a noisy 2-core machine), the process's peak
memory grew by less than :data:`MAX_GROWTH_MB`, and the error says what happened.
Before these bounds, the same servers kept calls running for 70 s+ and grew the client
past 500 MB in 1-2 s.
"""

import json
import os
import subprocess
import sys

import pytest

from ._hostile_server import HostileServer

pytestmark = pytest.mark.slow

#: What a noisy machine may add to a bound (scheduling, not the server).
SLACK_SECONDS = 4.0
#: Peak memory growth allowed for one call: the 32 MiB default cap, plus working copies.
MAX_GROWTH_MB = 100

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import json, os, resource, sys, time
from cowork_llm import create_llm_client
from cowork_llm.config import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig

args = json.loads(sys.argv[1])
MESSAGES = [{"role": "user", "content": "hello"}]

def client(url, model=None, retry=None):
    return create_llm_client(LlmConfig(
        model=ModelConfig(base_url=url, api_key="sk-hostile-0123456789abcdef", model_name="m",
                          **(model or {})),
        rate_limit=RateLimitConfig(min_interval_seconds=0.0, key="hostile"),
        retry=RetryConfig(initial_wait_seconds=0.1, **(retry or {}))))

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

warm = client(args["ok_url"])  # load every module a call uses before measuring
assert warm.chat(MESSAGES).content == "fine"
llm = client(args["url"], args.get("model"), args.get("retry"))
out = {}
before = peak_mb()
started = time.monotonic()
try:
    if args["call"] == "chat":
        out["content"] = llm.chat(MESSAGES).content
    else:
        pieces = 0
        with llm.stream(MESSAGES) as stream:
            for _ in stream:
                pieces += 1
        out["pieces"] = pieces
except Exception as error:
    out["error"] = type(error).__name__
    out["classes"] = [cls.__name__ for cls in type(error).__mro__]
    out["message"] = str(error)
    out["attempts"] = getattr(error, "attempts", None)
out["seconds"] = time.monotonic() - started
out["growth_mb"] = peak_mb() - before
if os.environ.get("MUTANT_UNDER_TEST") == "stats":  # see _with_mutmut_hits
    from mutmut.state import state
    out["mutmut_hits"] = sorted(state()._stats)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def hostile():
    with HostileServer() as server:
        yield server


def run_call(server, mode, call="chat", model=None, retry=None):
    args = {"url": server.url(mode), "ok_url": server.url("ok"), "call": call,
            "model": model or {}, "retry": retry or {"max_attempts": 1}}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return _with_mutmut_hits(json.loads(done.stdout.strip().splitlines()[-1]))


def _with_mutmut_hits(out):
    """Under mutation testing (TESTING.md), the functions the child reached count as this
    test's: mutmut's first pass records which test reaches which function, in its own
    process only, and would run no test of the call code against its mutants. (The child
    runs from ROOT, where mutmut's copy keeps the setup.cfg it reads.)"""
    hits = out.pop("mutmut_hits", None)
    if hits:
        from mutmut.state import state

        state()._stats.update(hits)
    return out


def assert_bounded(out, error, fragment, seconds):
    assert out.get("error") is not None, out
    assert error in out["classes"], out
    assert fragment in out["message"], out
    assert out["seconds"] < seconds + SLACK_SECONDS, out
    assert out["growth_mb"] < MAX_GROWTH_MB, out


# --- time -----------------------------------------------------------------------------------


def test_slowloris_headers_end_at_the_attempt_deadline(hostile):
    out = run_call(hostile, "slowloris-headers", model={"timeout_seconds": 2})
    assert_bounded(out, "ApiTimeoutError", "model.timeout_seconds = 2 s", 2)
    assert out["seconds"] >= 1.9  # the bound, not an earlier accident


def test_slowloris_body_ends_at_the_attempt_deadline(hostile):
    out = run_call(hostile, "slowloris-body", model={"timeout_seconds": 2})
    assert_bounded(out, "ApiTimeoutError", "model.timeout_seconds = 2 s", 2)


def test_a_slow_body_without_a_length_cut_at_the_deadline_is_a_timeout_not_an_answer(hostile):
    # Cut at the deadline, a body whose end is the connection's end looks whole.
    out = run_call(hostile, "slowloris-unsized-body", model={"timeout_seconds": 2})
    assert_bounded(out, "ApiTimeoutError", "the attempt was cut off at model.timeout_seconds = 2 s", 2)


def test_total_timeout_bounds_the_whole_call_attempts_and_waits(hostile):
    # Two full attempts would take 4 s and five 10 s: the 3 s budget cuts the second short.
    out = run_call(hostile, "slowloris-headers", model={"timeout_seconds": 2},
                   retry={"max_attempts": 5, "total_timeout_seconds": 3})
    assert_bounded(out, "ApiTimeoutError", "retry.total_timeout_seconds = 3 s", 3)
    assert out["attempts"] == 2 and out["seconds"] >= 2.9


@pytest.mark.parametrize("mode", ["endless-sse-keepalive", "endless-sse-keepalive-unsized"])
def test_a_stream_of_keep_alives_ends_at_the_idle_timeout(hostile, mode):
    # "-unsized": no chunks, the stream ends when the connection does.
    out = run_call(hostile, mode, call="stream",
                   model={"stream_idle_timeout_seconds": 1.5})
    assert_bounded(out, "ApiTimeoutError", "stream_idle_timeout_seconds = 1.5 s", 1.5)


def test_an_endless_stream_of_content_ends_at_the_stream_timeout(hostile):
    out = run_call(hostile, "endless-sse-content", call="stream",
                   model={"stream_timeout_seconds": 2, "stream_idle_timeout_seconds": 30})
    assert_bounded(out, "ApiTimeoutError", "stream_timeout_seconds = 2 s", 2)


# --- memory ---------------------------------------------------------------------------------


def test_an_endless_body_stops_at_max_response_bytes(hostile):
    out = run_call(hostile, "endless-body")
    assert_bounded(out, "InvalidResponseError", f"model.max_response_bytes = {32 * 1024 * 1024} bytes", 10)


def test_a_gzip_bomb_is_counted_after_decompression(hostile):
    out = run_call(hostile, "gzip-bomb", model={"max_response_bytes": 4 * 1024 * 1024})
    assert_bounded(out, "InvalidResponseError",
                   "max_response_bytes = 4194304 bytes (after decompression)", 10)


def test_a_huge_error_body_is_read_only_for_its_message(hostile):
    out = run_call(hostile, "huge-error")
    assert_bounded(out, "BadRequestError", "overloaded, sorry", 5)
    assert len(out["message"]) < 2000


def test_an_endless_stream_line_is_capped(hostile):
    out = run_call(hostile, "endless-sse-line", call="stream")
    assert_bounded(out, "InvalidResponseError", "a line longer than 4194304 bytes", 10)


# --- errors that say the right thing --------------------------------------------------------


def test_a_huge_header_is_not_retried_and_says_so(hostile):
    before = hostile.requests.get("huge-header", 0)
    out = run_call(hostile, "huge-header", retry={"max_attempts": 5})
    assert_bounded(out, "InvalidResponseError", "header from 127.0.0.1 is too large", 5)
    assert out["attempts"] == 1 and hostile.requests["huge-header"] - before == 1


def test_a_redirect_loop_is_not_retried_and_says_so(hostile):
    before = hostile.requests.get("redirect-loop", 0)
    out = run_call(hostile, "redirect-loop", retry={"max_attempts": 5})
    assert_bounded(out, "InvalidResponseError", "too many redirects from 127.0.0.1", 5)
    assert out["attempts"] == 1
    assert hostile.requests["redirect-loop"] - before == 6  # the request and 5 redirects, not 31 x 5


def test_invalid_utf8_in_an_answer_is_an_error(hostile):
    out = run_call(hostile, "invalid-utf8")
    assert_bounded(out, "InvalidResponseError", "not valid UTF-8 (byte 0xff", 5)


# --- the health check meets the same server -------------------------------------------------


@pytest.mark.parametrize("mode, fragment", [
    ("slowloris-body", "no answer within 2 s"),
    ("endless-body", "larger than model.max_response_bytes = 1048576 bytes"),
    ("gzip-bomb", "larger than model.max_response_bytes = 1048576 bytes"),
])
def test_the_health_check_is_bounded_too(hostile, mode, fragment):
    import time

    from cowork_llm.config import ModelConfig
    from cowork_llm.health import check_health

    model = ModelConfig(base_url=hostile.url(mode), api_key="sk-hostile-0123456789abcdef", model_name="m",
                        max_response_bytes=1024 * 1024)
    started = time.monotonic()
    status = check_health(model, timeout=2.0)
    assert not status.ok and fragment in status.detail, status
    assert time.monotonic() - started < 2.0 + SLACK_SECONDS


def test_a_slowloris_holds_a_shared_limiter_slot_no_longer_than_its_deadline(hostile):
    # Before: a dripping server kept the slot for 70 s+, and a healthy call queued behind it
    # in the same limiter waited 25 s+. Now the slot comes back at the attempt's deadline.
    import threading
    import time

    from cowork_llm import create_llm_client
    from cowork_llm.config import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig

    def client(mode):
        return create_llm_client(LlmConfig(
            model=ModelConfig(base_url=hostile.url(mode), api_key="sk-hostile-0123456789abcdef",
                              model_name="m", timeout_seconds=2),
            rate_limit=RateLimitConfig(min_interval_seconds=0.0, max_concurrent=1, key="hostile-shared"),
            retry=RetryConfig(max_attempts=1)))

    slow, healthy = client("slowloris-body"), client("ok")
    before = hostile.requests.get("slowloris-body", 0)
    errors = []
    stuck = threading.Thread(target=lambda: errors.append(_failure(slow)))
    stuck.start()
    deadline = time.monotonic() + 30
    while hostile.requests.get("slowloris-body", 0) == before and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a recorded fact: the slow request holds the slot
    started = time.monotonic()
    assert healthy.chat([{"role": "user", "content": "hi"}]).content == "fine"
    waited = time.monotonic() - started
    stuck.join(30)
    assert errors == ["ApiTimeoutError"]
    assert 1.0 < waited < 2.0 + SLACK_SECONDS  # it did queue behind the slow one, and not for long


def _failure(llm):
    try:
        llm.chat([{"role": "user", "content": "hi"}])
    except Exception as error:
        return type(error).__name__
    return None
