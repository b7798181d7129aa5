"""run_batch and its parts: input checks, the output journal, resume, stopping, progress."""

import _thread
import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import filelock
import pytest

from cowork_llm.batch import BatchInterrupted, read_batch_file, run_batch
from cowork_llm.batch._journal import JournalWriter, recover_journal
from cowork_llm.batch._progress import LogProgress, make_progress
from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import RateLimitConfig
from cowork_llm.errors import (
    AuthenticationError,
    BadRequestError,
    BatchInputError,
    BatchOutputError,
    OutputLockedError,
    ServerError,
)
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.testing import MockLlm

WAIT = 10  # seconds; every wait in these tests is for an event that should come at once


def EchoLlm(behaviour: Optional[Callable[[str], None]] = None) -> MockLlm:
    """A MockLlm answering ``echo: <prompt>``, after ``behaviour(prompt)`` (which may
    raise, or block on an event)."""

    def respond(messages: List[Dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        if behaviour is not None:
            behaviour(prompt)
        return f"echo: {prompt}"

    return MockLlm(respond, model="echo-1")


def items(n: int, prefix: str = "p") -> List[Dict[str, object]]:
    return [{"id": i, "prompt": f"{prefix}{i}"} for i in range(n)]


def read_lines(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def assert_each_id_once_and_valid(path: Path, ids: List[object]) -> None:
    lines = read_lines(path)
    assert sorted(str(r["id"]) for r in lines) == sorted(str(i) for i in ids)
    for record in lines:
        assert record["output"] == f"echo: p{record['id']}"


# --- input ---------------------------------------------------------------------------


def test_every_input_problem_is_reported_with_its_line_number(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join([
        b'{"id": 1, "prompt": "fine"}',
        b'{"id": 2, "prompt": "broken"',                       # 2 invalid JSON
        b'{"prompt": "no id"}',                                 # 3
        b'{"id": "1", "prompt": "same id as text"}',           # 4 duplicate of 1
        b'{"id": 5}',                                           # 5 no prompt
        b'{"id": 6, "prompt": "x", "messages": []}',           # 6 both
        b'{"id": 7, "messages": [{"role": "robot", "content": "x"}]}',  # 7 bad role
        b'',                                                    # blank: ignored
        b'{"id": true, "prompt": "x"}',                         # 9 bool id
        b'{"id": 10, "promt": "typo"}',                         # 10 unknown key
        b'{"id": 11, "prompt": "\xff"}',                        # 11 not UTF-8
        b'[1, 2]',                                              # 12 not an object
        b'{"id": 13, "prompt": "ok", "system_prompt": "be brief", "max_tokens": 5}',
    ]))
    valid, problems = read_batch_file(source)
    assert [item.id for item in valid] == [1, 13]
    assert valid[1].messages == [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "ok"}]
    by_line = {p.line: p.message for p in problems}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12]
    assert "not valid JSON" in by_line[2]
    assert "missing 'id'" in by_line[3]
    assert "duplicate id" in by_line[4] and "line 1" in by_line[4] and "as text" in by_line[4]
    assert "missing 'prompt'" in by_line[5]
    assert "not both" in by_line[6]
    assert "role" in by_line[7]
    assert "string or an integer" in by_line[9]
    assert "'promt'" in by_line[10]
    assert "UTF-8" in by_line[11]
    assert "JSON object" in by_line[12]


def test_invalid_items_stop_the_batch_before_any_request(tmp_path):
    llm = EchoLlm()
    with pytest.raises(BatchInputError) as caught:
        run_batch(llm, [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}, {"id": 2}],
                  tmp_path / "out.jsonl", progress="none")
    assert [p.line for p in caught.value.problems] == [2, 3]
    assert "item 2: duplicate id 1" in str(caught.value)
    assert llm.prompts == []
    assert not (tmp_path / "out.jsonl").exists()


def test_items_take_every_chat_option_checked_with_line_numbers(tmp_path):
    source = tmp_path / "in.jsonl"
    schema = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
    source.write_text("\n".join(json.dumps(obj) for obj in [
        {"id": 1, "prompt": "a", "seed": 3, "stop": ["END"], "top_p": 0.5, "reasoning_effort": "low",
         "extra_body": {"user": "u"}},
        {"id": 2, "prompt": "b", "seed": "three"},                               # 2
        {"id": 3, "prompt": "c", "stop": ["a", "b", "c", "d", "e"]},              # 3
        {"id": 4, "prompt": "d", "response_format": {"type": "yaml"}},           # 4
        {"id": 5, "prompt": "e", "response_format": schema},
        {"id": 6, "prompt": "f", "extra_body": {"messages": []}},                 # 6
    ]), encoding="utf-8")
    valid, problems = read_batch_file(source)
    assert [item.id for item in valid] == [1, 5]
    assert valid[0].options == {"seed": 3, "stop": ["END"], "top_p": 0.5, "reasoning_effort": "low",
                                "extra_body": {"user": "u"}}
    by_line = {p.line: p.message for p in problems}
    assert sorted(by_line) == [2, 3, 4, 6]
    assert "seed must be an integer" in by_line[2]
    assert "stop takes at most 4" in by_line[3]
    assert "response_format['type'] must be" in by_line[4]
    assert "extra_body cannot set 'messages'" in by_line[6]


def test_item_options_reach_the_model_and_parsed_json_the_output(tmp_path):
    llm = MockLlm(lambda messages: '{"n": 7}', model="json-1")
    schema = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
    out = tmp_path / "out.jsonl"
    run_batch(llm, [{"id": "a", "prompt": "x", "seed": 9, "response_format": schema},
                    {"id": "b", "prompt": "y"}], out, progress="none")
    by_id = {r["id"]: r for r in read_lines(out)}
    assert by_id["a"]["parsed"] == {"n": 7} and "parsed" not in by_id["b"]
    assert by_id["b"]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    sent = {call.prompt: call.options for call in llm.calls}
    assert sent["x"]["seed"] == 9 and sent["y"]["seed"] is None


# --- running -------------------------------------------------------------------------


def test_every_item_gets_one_line_and_ids_keep_their_type(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = run_batch(EchoLlm(), [{"id": 1, "prompt": "p1"}, {"id": "a", "prompt": "pa"}],
                        out, workers=2, progress="none")
    assert summary.exit_code == 0 and summary.succeeded == 2 and summary.failed == 0
    by_id = {json.dumps(r["id"]): r for r in read_lines(out)}
    assert set(by_id) == {"1", '"a"'}
    record = by_id["1"]
    assert set(record) == {"id", "output", "model", "usage", "finish_reason"}
    assert (record["output"], record["model"], record["finish_reason"]) == ("echo: p1", "echo-1", "stop")
    usage = record["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert summary.prompt_tokens == sum(r["usage"]["prompt_tokens"] for r in by_id.values())
    assert summary.completion_tokens == sum(r["usage"]["completion_tokens"] for r in by_id.values())


def test_per_item_failures_are_recorded_while_the_batch_goes_on(tmp_path):
    def behaviour(prompt: str) -> None:
        if prompt == "p3":
            raise BadRequestError("prompt too long", status_code=400)
        if prompt == "p5":
            raise ValueError("the provider refused this message")

    out = tmp_path / "out.jsonl"
    summary = run_batch(EchoLlm(behaviour), items(8), out, workers=3, progress="none")
    assert (summary.succeeded, summary.failed, summary.exit_code) == (6, 2, 1)
    errors = {r["id"]: r["error"] for r in read_lines(out) if "error" in r}
    assert errors[3]["type"] == "BadRequestError" and errors[3]["status_code"] == 400
    assert "prompt too long" in errors[3]["message"]
    assert errors[5] == {"type": "ValueError", "message": "the provider refused this message",
                         "status_code": None}


def test_output_order_follows_completion_not_input(tmp_path):
    second_done = threading.Event()

    def behaviour(prompt: str) -> None:
        if prompt == "p0":  # the first item waits until the second has finished
            assert second_done.wait(WAIT)

    class Signalling(JournalWriter):
        def write(self, record):  # type: ignore[no-untyped-def]
            written = super().write(record)
            if record["id"] == 1:
                second_done.set()
            return written

    import cowork_llm.batch._runner as batch_module
    original = batch_module.JournalWriter
    batch_module.JournalWriter = Signalling  # type: ignore[misc]
    try:
        out = tmp_path / "out.jsonl"
        run_batch(EchoLlm(behaviour), items(2), out, workers=2, progress="none")
    finally:
        batch_module.JournalWriter = original  # type: ignore[misc]
    assert [r["id"] for r in read_lines(out)] == [1, 0]
    assert_each_id_once_and_valid(out, [0, 1])


def test_resume_skips_done_ids_and_retries_errored_ones(tmp_path):
    out = tmp_path / "out.jsonl"

    def flaky(prompt: str) -> None:
        if prompt in ("p2", "p4"):
            raise ServerError("overloaded", status_code=529)

    first = run_batch(EchoLlm(flaky), items(6), out, workers=2, progress="none")
    assert (first.succeeded, first.failed) == (4, 2)
    done_before = [line for line in out.read_text().splitlines() if '"output"' in line]

    llm = EchoLlm()
    second = run_batch(llm, items(6), out, workers=2, progress="none")
    assert sorted(llm.prompts) == ["p2", "p4"]
    assert (second.already_done, second.succeeded, second.failed, second.exit_code) == (4, 2, 0, 0)
    assert out.read_text().splitlines()[:4] == done_before  # kept byte for byte
    assert_each_id_once_and_valid(out, list(range(6)))


def test_ids_are_compared_as_text_on_resume(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "1", "output": "earlier", "model": "m", "usage": null}\n')
    llm = EchoLlm()
    summary = run_batch(llm, [{"id": 1, "prompt": "p1"}, {"id": 2, "prompt": "p2"}], out,
                        progress="none")
    assert llm.prompts == ["p2"] and summary.already_done == 1


def test_a_torn_last_line_is_saved_cut_off_and_run_again(tmp_path):
    out = tmp_path / "out.jsonl"
    complete = '{"id": 0, "output": "echo: p0", "model": "m", "usage": null}\n'
    torn = '{"id": 1, "output": "echo: p'
    out.write_text(complete + torn)
    llm = EchoLlm()
    summary = run_batch(llm, items(3), out, progress="none")
    assert sorted(llm.prompts) == ["p1", "p2"]
    assert summary.repaired_bytes == len(torn)
    assert out.read_text().startswith(complete)
    assert (tmp_path / "out.jsonl.torn").read_text() == torn + "\n"
    assert_each_id_once_and_valid(out, [0, 1, 2])


def test_a_foreign_output_file_is_refused_untouched(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "prompt": "this is an input file"}\n')
    llm = EchoLlm()
    with pytest.raises(BatchOutputError, match="line 1 is not a batch result"):
        run_batch(llm, items(2), out, progress="none")
    assert llm.prompts == []
    assert out.read_text() == '{"id": 1, "prompt": "this is an input file"}\n'


# --- stopping ------------------------------------------------------------------------


def test_an_authentication_error_stops_new_items_instead_of_failing_all(tmp_path, caplog):
    def reject(prompt: str) -> None:
        raise AuthenticationError("invalid api key", status_code=401)

    out = tmp_path / "out.jsonl"
    llm = EchoLlm(reject)
    summary = run_batch(llm, items(200), out, workers=2, progress="none")
    # Each worker may have started one more item before the first failure stopped them.
    assert 1 <= len(llm.prompts) <= 2 * 2
    assert summary.failed == len(llm.prompts) and summary.not_started == 200 - len(llm.prompts)
    assert summary.exit_code == 1 and "AuthenticationError" in (summary.stopped_reason or "")
    assert any("stopping" in r.getMessage() for r in caplog.records)
    assert len(read_lines(out)) == len(llm.prompts)

    resumed = run_batch(EchoLlm(), items(200), out, workers=4, progress="none")
    assert resumed.exit_code == 0 and resumed.succeeded == 200
    assert_each_id_once_and_valid(out, list(range(200)))


def test_many_failures_in_a_row_stop_the_batch(tmp_path):
    def down(prompt: str) -> None:
        raise ServerError("bad gateway", status_code=502)

    llm = EchoLlm(down)
    summary = run_batch(llm, items(100), tmp_path / "out.jsonl", workers=1, progress="none",
                        max_consecutive_failures=5)
    assert len(llm.prompts) == 5
    assert "last 5 items all failed" in (summary.stopped_reason or "")


def _blocking_llm(started: threading.Semaphore, release: threading.Event) -> EchoLlm:
    def behaviour(prompt: str) -> None:
        started.release()
        assert release.wait(WAIT)

    return EchoLlm(behaviour)


def test_stop_event_lets_in_flight_items_finish_and_starts_no_more(tmp_path):
    started, release, stop = threading.Semaphore(0), threading.Event(), threading.Event()
    llm = _blocking_llm(started, release)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(summary=run_batch(
        llm, items(50), tmp_path / "out.jsonl", workers=3, progress="none", stop_event=stop)))
    runner.start()
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    stop.set()
    release.set()
    runner.join(WAIT)
    summary = result["summary"]
    assert summary.interrupted and summary.exit_code == 130
    assert len(llm.prompts) == 3 and summary.succeeded == 3 and summary.not_started == 47
    assert len(read_lines(tmp_path / "out.jsonl")) == summary.succeeded


def test_ctrl_c_finishes_in_flight_then_a_second_one_abandons_them(tmp_path, caplog):
    """Ctrl-C arrives in the main thread (``_thread.interrupt_main`` is what SIGINT does)."""
    started, release = threading.Semaphore(0), threading.Event()
    caplog.set_level(logging.WARNING, logger="cowork_llm")

    def interrupt_twice() -> None:
        for _ in range(2):
            assert started.acquire(timeout=WAIT)
        _thread.interrupt_main()
        while not any("interrupted" in r.getMessage() for r in list(caplog.records)):
            threading.Event().wait(0.01)  # polling a condition, not sleeping for luck
        _thread.interrupt_main()

    threading.Thread(target=interrupt_twice, daemon=True).start()
    out = tmp_path / "out.jsonl"
    with pytest.raises(BatchInterrupted) as caught:
        run_batch(_blocking_llm(started, release), items(20), out, workers=2, progress="none")
    release.set()  # the abandoned workers now finish, but must not write
    summary = caught.value.summary
    assert summary.interrupted and summary.exit_code == 130
    assert summary.abandoned == 2 and summary.succeeded == 0 and summary.not_started == 18
    assert out.read_text() == ""


# --- journal ---------------------------------------------------------------------------


def test_concurrent_writes_never_interleave(tmp_path):
    path = tmp_path / "out.jsonl"
    writer = JournalWriter(path, fsync_interval_seconds=0.0)
    barrier = threading.Barrier(16)

    def hammer(worker: int) -> None:
        barrier.wait()
        for n in range(100):
            # Lines far larger than a pipe or buffer chunk, each one different.
            writer.write({"id": f"{worker}-{n}", "output": chr(65 + worker) * (n * 997 % 70000)})

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    lines = read_lines(path)
    assert len(lines) == 1600 and len({r["id"] for r in lines}) == 1600
    for record in lines:
        worker, n = map(int, record["id"].split("-"))
        assert record["output"] == chr(65 + worker) * (n * 997 % 70000)
    assert writer.write({"id": "late", "output": ""}) is False


def test_many_workers_through_run_batch_give_one_valid_line_per_id(tmp_path):
    out = tmp_path / "out.jsonl"
    summary = run_batch(EchoLlm(), items(600), out, workers=16, progress="none",
                        fsync_interval_seconds=0.0)
    assert summary.succeeded == 600
    assert_each_id_once_and_valid(out, list(range(600)))


def test_writer_fsyncs_on_its_interval_and_at_close(tmp_path):
    now = [0.0]
    writer = JournalWriter(tmp_path / "out.jsonl", fsync_interval_seconds=1.0, clock=lambda: now[0])
    writer.write({"id": 1, "output": ""})
    assert writer.fsyncs == 0
    now[0] = 1.5
    writer.write({"id": 2, "output": ""})
    assert writer.fsyncs == 1
    writer.close()
    writer.close()
    assert writer.fsyncs == 2


def test_recover_journal_tells_done_from_failed(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1, "error": {"type": "X", "message": "", "status_code": null}}\n'
                    '{"id": 2, "error": {"type": "X", "message": "", "status_code": null}}\n'
                    '{"id": 1, "output": "later success"}\n\n')
    state = recover_journal(path)
    assert state.done == {"1"} and state.failed == {"2"} and state.repaired_bytes == 0


# --- progress --------------------------------------------------------------------------


def test_log_progress_prints_done_failed_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="cowork_llm.batch")
    now = [0.0]
    progress = LogProgress(10, interval_seconds=5.0, clock=lambda: now[0])
    for failed in (False, True, False, False):
        progress.advance(failed)
    now[0] = 2.0
    progress.tick()
    assert not caplog.records  # not yet time for a line
    now[0] = 8.0
    progress.tick()
    assert caplog.records[-1].getMessage() == "4/10 done, 1 failed, 0.50/s, ETA 12s"


def test_bar_progress_shows_count_and_failures():
    stream = io.StringIO()
    progress = make_progress("bar", 3, stream=stream)
    for failed in (False, True, False):
        progress.advance(failed)
    progress.close()
    text = stream.getvalue()
    assert "3/3" in text and "failed=1" in text


def test_auto_progress_uses_log_lines_when_not_a_terminal():
    assert isinstance(make_progress("auto", 3, stream=io.StringIO()), LogProgress)
    with pytest.raises(ValueError, match="progress must be one of"):
        make_progress("fancy", 3)


# --- stopping while workers queue in the limiter ------------------------------------------


def _limited(inner: MockLlm, **settings: object) -> RateLimitedLlm:
    return RateLimitedLlm(inner, RateLimiter(RateLimitConfig(**settings)))  # type: ignore[arg-type]


def test_a_stop_sends_nothing_for_workers_still_queued_in_the_limiter(tmp_path):
    """One request in flight, three workers queued for the one slot: the stop lets the
    first finish and the queued ones never send (before, each sent after the stop)."""
    gate, stop = threading.Event(), threading.Event()
    inner = MockLlm(gate=gate)
    client = _limited(inner, min_interval_seconds=0, max_concurrent=1)
    out = tmp_path / "out.jsonl"
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(summary=run_batch(
        client, items(20), out, workers=4, progress="none", stop_event=stop)))
    runner.start()
    assert client.limiter.wait_for_queued(3, WAIT)  # one admitted (held by the gate), 3 queued
    stop.set()
    gate.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    summary = result["summary"]
    assert len(inner.prompts) == 1 and client.limiter.admitted_count == 1
    assert (summary.succeeded, summary.failed, summary.abandoned) == (1, 0, 0)
    assert summary.not_started == 19 and summary.exit_code == 130
    assert [r["id"] for r in read_lines(out)] == [int(inner.prompts[0][1:])]
    assert client.limiter.queued == 0 and client.limiter.in_flight == 0

    resumed = run_batch(_limited(MockLlm(), min_interval_seconds=0), items(20), out,
                        workers=4, progress="none")
    assert resumed.exit_code == 0 and (resumed.already_done, resumed.succeeded) == (1, 19)
    ids = sorted(r["id"] for r in read_lines(out))
    assert ids == list(range(20))


# --- one run per output file ------------------------------------------------------------


def _lock_is_free(path: Path) -> bool:
    probe = filelock.FileLock(str(path) + ".lock", timeout=0)
    try:
        probe.acquire()
    except filelock.Timeout:
        return False
    probe.release()
    return True


def test_a_second_run_on_the_same_output_fails_at_once_and_changes_nothing(tmp_path):
    started, release = threading.Semaphore(0), threading.Event()
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 0, "output": "echo: p0", "model": "m", "usage": null}\n')
    result: dict = {}
    first = threading.Thread(target=lambda: result.update(summary=run_batch(
        _blocking_llm(started, release), items(6), out, workers=2, progress="none")))
    first.start()
    assert started.acquire(timeout=WAIT)
    before = out.read_bytes()
    second_llm = EchoLlm()
    began = time.monotonic()
    with pytest.raises(OutputLockedError) as caught:
        run_batch(second_llm, items(6), out, workers=2, progress="none")
    assert time.monotonic() - began < WAIT / 2  # at once, not after the first run
    message = str(caught.value)
    assert str(out) in message and "another batch" in message and "\n" not in message
    assert isinstance(caught.value, BatchOutputError)
    assert second_llm.prompts == [] and out.read_bytes() == before
    assert not _lock_is_free(out)
    release.set()
    first.join(WAIT)
    assert result["summary"].exit_code == 0
    assert_each_id_once_and_valid(out, list(range(6)))
    assert _lock_is_free(out)  # released when the run ended
    again = run_batch(EchoLlm(), items(6), out, progress="none")  # and usable again
    assert again.already_done == 6


def test_the_lock_is_released_after_an_error_and_after_ctrl_c(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "prompt": "an input file given as -o"}\n')
    with pytest.raises(BatchOutputError):
        run_batch(EchoLlm(), items(2), out, progress="none")
    assert _lock_is_free(out)

    def interrupt(prompt: str) -> None:
        _thread.interrupt_main()

    out.unlink()
    with pytest.raises(BatchInterrupted):
        run_batch(EchoLlm(interrupt), items(5), out, workers=1, progress="none")
    assert _lock_is_free(out)
    assert run_batch(EchoLlm(), items(5), out, progress="none").exit_code == 0
