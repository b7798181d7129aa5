"""The CLI in a new user's hands: global options anywhere, --strict, a line per retry and
per long wait for the rate limit (none with --quiet), batch output in one format."""

import json
import os
import subprocess
import sys

import pytest

from cowork_llm.testing import FakeLlmServer

KEY = "sk-cli-progress-SECRET-0123456789"


def cli(*argv, env=None, cwd=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "cowork_llm", *argv], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as srv:
        yield srv


def config_file(tmp_path, server, extra=""):
    path = tmp_path / "my.toml"
    path.write_text(f'[llm.model]\nbase_url = "{server.base_url}"\napi_key = "{KEY}"\n'
                    f'model_name = "fake-model"\n[llm.rate_limit]\nmin_interval_seconds = 0.0\n'
                    f'key = "cli-{server.port}"\n{extra}')
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_go_before_or_after_the_command(tmp_path, server, where):
    path = config_file(tmp_path, server)
    argv = (["--config", str(path), "--quiet", "ask", "hi"] if where == "before"
            else ["ask", "hi", "--config", str(path), "--quiet"])
    done = cli(*argv)
    assert (done.returncode, done.stdout, done.stderr) == (0, "echo: hi\n", "")


def test_an_unknown_key_warns_and_strict_makes_it_an_error(tmp_path, server):
    path = config_file(tmp_path, server, extra="min_interval_second = 1\n")
    warned = cli("--config", str(path), "ask", "hi")
    assert warned.returncode == 0 and warned.stdout == "echo: hi\n"
    assert "did you mean llm.rate_limit.min_interval_seconds" in warned.stderr
    for argv, env in ((["--strict", "--config", str(path), "ask", "hi"], {}),
                      (["ask", "hi", "--config", str(path)], {"COWORK_LLM_STRICT": "1"})):
        refused = cli(*argv, env=env)
        assert refused.returncode == 2 and refused.stdout == ""
        (line,) = refused.stderr.splitlines()
        assert "unknown key llm.rate_limit.min_interval_second" in line and "--strict" in line
    assert server.request_count == 1  # only the lenient run sent anything


def test_an_unknown_variable_is_an_error_when_strict(tmp_path, server):
    env = {**server.env(), "COWORK_LLM_MODEL_NAEM": "x", "COWORK_LLM_STRICT": "1"}
    done = cli("ask", "hi", env=env)
    assert done.returncode == 2 and "unknown variable COWORK_LLM_MODEL_NAEM" in done.stderr


def test_a_retry_after_a_503_is_one_short_line(tmp_path, server):
    server.fail_next(503, retry_after=1.0)
    done = cli("ask", "hi", env=server.env(initial_wait_seconds=0.01))
    assert done.returncode == 0 and done.stdout == "echo: hi\n"
    assert done.stderr.splitlines() == [
        "cowork-llm ask: server error 503, retrying in 1.0 s (attempt 2 of 5)"]
    quiet = cli("ask", "hi", "--quiet", env=server.env())
    assert quiet.stderr == ""


def test_an_unreachable_host_fails_in_one_line_in_our_words(tmp_path):
    with FakeLlmServer() as gone:
        env = gone.env(max_attempts=2, initial_wait_seconds=1.0, max_wait_seconds=1.0)
    done = cli("ask", "hi", env=env)  # the server is stopped: connection refused
    assert done.returncode == 1
    retry, final = done.stderr.splitlines()
    assert retry.startswith("cowork-llm ask: could not connect, retrying in ")
    assert retry.endswith("(attempt 2 of 2)")
    assert final.startswith("cowork-llm: ApiConnectionError: could not reach openai at ")
    assert "connection refused" in final and "urllib3" not in final and len(final) < 200


def test_batch_lines_share_one_format_and_long_waits_are_told(tmp_path, server):
    items = tmp_path / "in.jsonl"
    items.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(2)))
    env = server.env(min_interval_seconds=1.2)
    done = cli("batch", str(items), "-o", str(tmp_path / "out.jsonl"), "--progress", "log",
               env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("cowork-llm batch: ") for line in lines), lines
    assert any(line.startswith("cowork-llm batch: waited 1.") and line.endswith("for the rate limit")
               for line in lines), lines
    quiet = cli("batch", str(items), "-o", str(tmp_path / "out2.jsonl"), "--progress", "log",
                "--quiet", env=env, cwd=tmp_path)
    assert not [line for line in quiet.stderr.splitlines() if "rate limit" in line]
