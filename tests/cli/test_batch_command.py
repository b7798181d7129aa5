"""``cowork-llm batch`` end to end against FakeLlmServer: kill -9, Ctrl-C, resume, bad input."""

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from cowork_llm.cli import build_parser, main
from cowork_llm.cli.batch import resume_command
from cowork_llm.testing import FakeLlmServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WAIT = 15.0  # seconds; only ever the limit of a wait for something that should happen soon


@pytest.fixture(autouse=True)
def _reset_batch_logger():
    yield
    logging.getLogger("cowork_llm.batch").setLevel(logging.NOTSET)


@pytest.fixture
def server():
    with FakeLlmServer() as running:
        yield running


def write_input(path: Path, count: int) -> List[int]:
    path.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(count)))
    return list(range(count))


def complete_lines(path: Path) -> List[dict]:
    if not path.exists():
        return []
    text = path.read_text("utf-8")
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def assert_each_id_once_with_its_answer(path: Path, ids: List[int]) -> None:
    records = complete_lines(path)
    assert path.read_text("utf-8").endswith("\n")
    assert sorted(r["id"] for r in records) == ids
    for record in records:
        assert record["output"] == f"echo: p{record['id']}"
        assert record["usage"]["total_tokens"] > 0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a file filling up, a line on stderr) until it holds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_batch(server: FakeLlmServer, *args: str, **overrides: object) -> subprocess.Popen:
    env = {**os.environ, **server.env(**{"max_concurrent": 4, **overrides})}
    return subprocess.Popen(
        [sys.executable, "-m", "cowork_llm", "batch", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


class StderrReader:
    """Collects a child's stderr from a thread, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: List[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line)

    def text(self) -> str:
        self._thread.join(WAIT)
        return "".join(self.lines)


# --- crashes and interruptions (real processes) ---------------------------------------


def test_kill_9_mid_run_then_resume_gives_every_id_exactly_once(tmp_path, server):
    ids = write_input(tmp_path / "in.jsonl", 80)
    out = tmp_path / "out.jsonl"
    child = start_batch(server, "in.jsonl", "-o", "out.jsonl", "--workers", "4",
                        min_interval_seconds=0.01)
    wait_until(lambda: len(complete_lines(out)) >= 10, "10 output lines")
    child.kill()
    child.communicate(timeout=WAIT)
    done = complete_lines(out)
    assert 10 <= len(done) < 80, "the batch should have been cut off mid-run"
    # A kill in the middle of a write leaves half a line; make sure there is one.
    with open(out, "a", encoding="utf-8") as torn:
        torn.write('{"id": 79, "output": "echo: p7')
    requests_before = len(server.chat_requests)

    resumed = start_batch(server, "in.jsonl", "-o", "out.jsonl", "--workers", "4")
    _, stderr = resumed.communicate(timeout=WAIT * 2)
    assert resumed.returncode == 0, stderr
    assert_each_id_once_with_its_answer(out, ids)
    assert out.read_text().startswith("".join(json.dumps(r) + "\n" for r in done))
    assert len(server.chat_requests) - requests_before == 80 - len(done)  # only the missing ones
    assert (tmp_path / "out.jsonl.torn").read_text() == '{"id": 79, "output": "echo: p7\n'
    assert "half-written" in stderr
    assert f"{80 - len(done)}/{80 - len(done)} done, 0 failed" in stderr  # the plain progress line


def test_ctrl_c_finishes_in_flight_items_and_prints_the_resume_command(tmp_path):
    ids = write_input(tmp_path / "in.jsonl", 40)
    out = tmp_path / "out.jsonl"
    with FakeLlmServer(latency_seconds=0.1) as server:
        child = start_batch(server, "in.jsonl", "-o", "out.jsonl", "--workers", "3")
        wait_until(lambda: len(complete_lines(out)) >= 3, "3 output lines")
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=WAIT)
        assert child.returncode == 130, stderr
        # Every request that reached the server was finished and recorded.
        assert len(complete_lines(out)) == len(server.chat_requests) < 40
        assert "interrupted" in stderr
        command = next(line.split("run: ", 1)[1] for line in stderr.splitlines()
                       if "to continue, run: " in line)
        assert shlex.split(command) == ["python", "-m", "cowork_llm", "batch", "in.jsonl", "-o",
                                        "out.jsonl", "--workers", "3"]

        resumed = start_batch(server, *shlex.split(command)[4:])
        _, stderr = resumed.communicate(timeout=WAIT * 2)
        assert resumed.returncode == 0, stderr
        assert_each_id_once_with_its_answer(out, ids)


def test_a_second_ctrl_c_abandons_the_items_in_flight(tmp_path):
    write_input(tmp_path / "in.jsonl", 10)
    out = tmp_path / "out.jsonl"
    with FakeLlmServer(latency_seconds=30) as server:
        child = start_batch(server, "in.jsonl", "-o", "out.jsonl", "--workers", "2")
        stderr = StderrReader(child)
        server.wait_for_requests(2, timeout=WAIT)
        child.send_signal(signal.SIGINT)
        wait_until(lambda: any("Ctrl-C again" in line for line in stderr.lines), "the first Ctrl-C notice")
        child.send_signal(signal.SIGINT)
        child.wait(timeout=WAIT)  # well before the 30 s answers
        assert child.returncode == 130
        assert "2 abandoned in flight" in stderr.text()
        assert out.read_text() == ""


# --- the command in-process -------------------------------------------------------------


def test_invalid_input_is_reported_by_line_and_nothing_is_sent(tmp_path, server, monkeypatch, capsys):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    (tmp_path / "in.jsonl").write_text('{"id": 1, "prompt": "fine"}\nnot json\n{"id": 1, "prompt": "again"}\n'
                                       '{"id": 4}\n')
    assert main(["batch", "in.jsonl", "-o", "out.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "in.jsonl: line 2: not valid JSON" in err
    assert "in.jsonl: line 3: duplicate id 1" in err
    assert "in.jsonl: line 4: missing 'prompt'" in err
    assert "--skip-invalid" in err
    assert server.chat_requests == [] and not (tmp_path / "out.jsonl").exists()

    assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--skip-invalid"]) == 0
    assert [r["id"] for r in complete_lines(tmp_path / "out.jsonl")] == [1]
    assert "skipping 3 invalid line(s)" in capsys.readouterr().err


def test_failed_items_are_recorded_the_batch_goes_on_and_a_rerun_retries_them(
        tmp_path, server, monkeypatch, capsys):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    ids = write_input(tmp_path / "in.jsonl", 12)  # max_concurrent 1: one worker by default
    server.fail_next(status=400, message="this prompt is not allowed")
    assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--progress", "none"]) == 1
    records = complete_lines(tmp_path / "out.jsonl")
    errors = [r for r in records if "error" in r]
    assert len(records) == 12 and len(errors) == 1
    assert errors[0]["error"]["type"] == "BadRequestError"
    assert errors[0]["error"]["status_code"] == 400
    assert "this prompt is not allowed" in errors[0]["error"]["message"]
    err = capsys.readouterr().err
    assert "11 succeeded, 1 failed" in err
    assert ("to retry the failed items and run the rest, run: cowork-llm batch in.jsonl -o out.jsonl "
            "--progress none\n") in err

    assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--progress", "none"]) == 0
    assert_each_id_once_with_its_answer(tmp_path / "out.jsonl", ids)
    assert "11 already done" in capsys.readouterr().err


def test_a_wrong_key_stops_the_batch_early_and_is_never_shown(tmp_path, monkeypatch, capsys):
    with FakeLlmServer(api_key="the-right-key") as server:
        for name, value in server.env(api_key="sk-wrong-key-1234567890", max_concurrent=2).items():
            monkeypatch.setenv(name, value)
        write_input(tmp_path / "in.jsonl", 100)
        assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--workers", "2", "--progress", "none"]) == 1
        records = complete_lines(tmp_path / "out.jsonl")
        # The rejected key is retired after the first 401, so later calls fail without a request.
        assert 1 <= len(records) <= 4 and 1 <= len(server.chat_requests) <= len(records)
        assert all(r["error"]["type"] == "AuthenticationError" for r in records)
    err = capsys.readouterr().err
    assert "stopped early: AuthenticationError" in err and "not started" in err
    assert "sk-wrong-key-1234567890" not in err + (tmp_path / "out.jsonl").read_text()


def test_progress_log_lines_are_shown_without_setting_a_log_level(tmp_path, server, monkeypatch, caplog):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    write_input(tmp_path / "in.jsonl", 3)
    assert main(["batch", "in.jsonl", "-o", "out.jsonl", "--log-every", "0.01"]) == 0
    progress = [r for r in caplog.records
                if r.name.startswith("cowork_llm.batch") and r.levelno == logging.INFO]
    assert any("3/3 done, 0 failed" in r.getMessage() for r in progress)


def test_the_output_must_not_be_the_input(tmp_path, capsys):
    write_input(tmp_path / "in.jsonl", 1)
    assert main(["batch", "in.jsonl", "-o", "./in.jsonl"]) == 2
    assert "-o names the input file" in capsys.readouterr().err


def test_resume_command_quotes_what_needs_quoting():
    args = build_parser().parse_args(["batch", "my prompts.jsonl", "-o", "out file.jsonl",
                                      "--config", "team config.toml", "--skip-invalid"])
    assert shlex.split(resume_command(args))[1:] == [
        "batch", "my prompts.jsonl", "-o", "out file.jsonl", "--config", "team config.toml",
        "--skip-invalid"]


def test_workers_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "in.jsonl", "-o", "out.jsonl", "--workers", "0"])
    assert "must be 1 or more" in capsys.readouterr().err


def test_the_sample_input_runs_cleanly(tmp_path, server, monkeypatch):
    for name, value in server.env(max_concurrent=2).items():
        monkeypatch.setenv(name, value)
    sample = Path(__file__).resolve().parents[2] / "examples" / "batch_prompts.jsonl"
    assert main(["batch", str(sample), "-o", "out.jsonl", "--progress", "none"]) == 0
    records = complete_lines(tmp_path / "out.jsonl")
    assert sorted(map(str, (r["id"] for r in records))) == ["1", "2", "5", "haiku", "review-7"]
    assert all("output" in r for r in records)
    by_prompt = {r.messages[-1]["content"]: r.json for r in server.chat_requests}
    assert by_prompt["Write a haiku about rate limits."]["max_tokens"] == 60


def test_after_ctrl_c_no_queued_worker_sends_its_request(tmp_path):
    """Four workers, one slot, starts 0.5 s apart: one request in flight, three queued in
    the limiter. After SIGINT no new request may reach the server (the one in flight
    finishes); before the fix each queued worker still sent its request."""
    ids = write_input(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out.jsonl"
    with FakeLlmServer(latency_seconds=0.3) as server:
        child = start_batch(server, "in.jsonl", "-o", "out.jsonl", "--workers", "4",
                            min_interval_seconds=0.5, max_concurrent=1)
        server.wait_for_requests(2, timeout=WAIT)  # the 2nd just arrived; the next is 0.5 s away
        signalled_at = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=WAIT)
        assert child.returncode == 130, stderr
        arrivals = [r.arrival_monotonic for r in server.chat_requests]
        late = [t - signalled_at for t in arrivals if t > signalled_at]
        # One may have been admitted just before the signal landed (a slow test thread).
        assert len(late) <= 1, f"requests sent after Ctrl-C: {late}"
        assert len(complete_lines(out)) == len(arrivals) < 30  # each sent one was recorded
        assert f"{30 - len(arrivals)} not started" in stderr
        requests_before = len(arrivals)

        resumed = start_batch(server, "in.jsonl", "-o", "out.jsonl", "--workers", "4",
                              min_interval_seconds=0.01)
        _, stderr = resumed.communicate(timeout=WAIT * 2)
        assert resumed.returncode == 0, stderr
        assert_each_id_once_with_its_answer(out, ids)
        assert len(server.chat_requests) - requests_before == 30 - requests_before


def test_a_second_batch_on_the_same_output_exits_2_and_a_killed_ones_lock_is_no_obstacle(tmp_path):
    ids = write_input(tmp_path / "in.jsonl", 8)
    out = tmp_path / "out.jsonl"
    with FakeLlmServer(latency_seconds=30) as slow, FakeLlmServer() as fast:
        first = start_batch(slow, "in.jsonl", "-o", "out.jsonl", "--workers", "2")
        slow.wait_for_requests(1, timeout=WAIT)  # running, holding the lock
        before = out.read_bytes()

        second = start_batch(fast, "in.jsonl", "-o", "out.jsonl", "--workers", "2")
        _, stderr = second.communicate(timeout=WAIT)
        assert second.returncode == 2, stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, stderr
        assert "out.jsonl is being written by another batch" in lines[0]
        assert fast.chat_requests == [] and out.read_bytes() == before

        first.kill()  # kill -9: no chance to release anything
        first.communicate(timeout=WAIT)
        assert (tmp_path / "out.jsonl.lock").exists()  # the file stays; the OS lock is gone

        third = start_batch(fast, "in.jsonl", "-o", "out.jsonl", "--workers", "2")
        _, stderr = third.communicate(timeout=WAIT * 2)
        assert third.returncode == 0, stderr
        assert_each_id_once_with_its_answer(out, ids)
