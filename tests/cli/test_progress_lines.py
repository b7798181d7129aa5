"""The CLI's progress lines: a few words per failure, only for waits of a second or more,
whole lines on stderr when many threads report at once."""

import threading

from cowork_llm.cli._progress_lines import ProgressLines, describe_failure
from cowork_llm.errors import ApiConnectionError, ApiTimeoutError, RateLimitError, ServerError
from cowork_llm.telemetry import CallInfo


def test_failures_in_a_few_words():
    assert describe_failure(ServerError("x", status_code=503)) == "server error 503"
    assert describe_failure(RateLimitError("x", status_code=429)) == "rate limited (429)"
    assert describe_failure(ApiTimeoutError("x")) == "no answer in time"
    assert describe_failure(ApiConnectionError("x")) == "could not connect"


def test_only_waits_of_a_second_or_more_are_told():
    said = []
    lines = ProgressLines(said.append, prefix="cowork-llm ask").start_call(CallInfo("chat", "m"))
    lines.slot_granted(1, 0.4, 0)
    lines.retrying(1, ServerError("x", status_code=500), 0.5, 3)
    lines.slot_granted(2, 1.44, 3)
    lines.retrying(2, ServerError("x", status_code=502), 2.06, 3)
    assert said == ["cowork-llm ask: waited 1.4 s for the rate limit",
                    "cowork-llm ask: server error 502, retrying in 2.1 s (attempt 3 of 3)"]


def test_many_threads_print_whole_lines(capsys):
    progress = ProgressLines(prefix="cowork-llm batch")
    barrier = threading.Barrier(16)

    def report(n):
        lines = progress.start_call(CallInfo("chat", "m"))
        barrier.wait()
        for i in range(50):
            lines.slot_granted(1, 1.0 + n, i)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 16 * 50
    assert all(line.startswith("cowork-llm batch: waited ") and line.endswith(" s for the rate limit")
               for line in err)
