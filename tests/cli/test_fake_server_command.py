"""`cowork-llm fake-server`: a new user tries every command without a key, using the
export lines it prints."""

import os
import signal
import subprocess
import sys

import pytest

from cowork_llm.cli.fake_server import parse_quota


def cli(*argv, env, timeout=60):
    return subprocess.run([sys.executable, "-m", "cowork_llm", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_printed_exports_let_every_command_run_then_ctrl_c_stops_it(tmp_path):
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    server = subprocess.Popen([sys.executable, "-m", "cowork_llm", "fake-server"], env=base_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        header = server.stdout.readline()
        assert header.startswith("fake LLM server on http://127.0.0.1:")
        env = dict(base_env)
        for _ in range(3):
            line = server.stdout.readline().strip()
            name, _, value = line.removeprefix("export ").partition("=")
            assert line.startswith("export COWORK_LLM_") and value, line
            env[name] = value
        assert cli("ask", "Name a colour", env=env).stdout == "echo: Name a colour\n"
        health = cli("health", env=env)
        assert health.returncode == 0 and health.stdout.startswith("healthy: openai fake-model")
        init = cli("init", env=env)
        assert init.returncode == 0 and "configuration is valid" in init.stdout
        items = tmp_path / "in.jsonl"
        items.write_text('{"id": 1, "prompt": "hi"}\n')
        batch = cli("batch", str(items), "-o", str(tmp_path / "out.jsonl"), env=env)
        assert batch.returncode == 0, batch.stderr
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "stopped after" in err and "Traceback" not in err


def test_a_taken_port_is_one_line_and_exit_2():
    from cowork_llm.testing import FakeLlmServer

    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    with FakeLlmServer() as taken:
        done = cli("fake-server", "--port", str(taken.port), env=env)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "cannot listen on 127.0.0.1:" in done.stderr


def test_quota_specs_are_checked():
    assert parse_quota("rpm=60, tpm=40000") == {"requests_per_minute": 60, "tokens_per_minute": 40000}
    import argparse

    for bad in ("rpm", "rpm=x", "rpm=0", "rps=5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_quota(bad)


def test_a_quota_spec_makes_a_server_enforcing_it_with_the_family_asked():
    import argparse

    import requests

    from cowork_llm.cli.fake_server import _server

    spec = parse_quota("rpm=2,itpm=1000,headers=anthropic")
    assert spec == {"requests_per_minute": 2, "input_tokens_per_minute": 1000, "headers": "anthropic"}
    with _server(0, spec).start() as server:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        answers = [requests.post(server.base_url + "/chat/completions", timeout=5, json=body,
                                 headers={"Authorization": "Bearer fake-key"})
                   for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[1].headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(answers[2].headers["retry-after"]) >= 1
    with pytest.raises(argparse.ArgumentTypeError, match="headers must be one of"):
        parse_quota("rpm=1,headers=azure")


def test_a_quota_is_announced_and_the_server_answers_under_it():
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    server = subprocess.Popen([sys.executable, "-m", "cowork_llm", "fake-server", "--quota", "rpm=120"],
                              env=base_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert "quota requests_per_minute=120" in server.stdout.readline()
        env = dict(base_env)
        for _ in range(3):
            name, _, value = server.stdout.readline().strip().removeprefix("export ").partition("=")
            env[name] = value
        import requests

        answer = requests.post(env["COWORK_LLM_BASE_URL"] + "/chat/completions", timeout=30,
                               headers={"Authorization": f"Bearer {env['COWORK_LLM_API_KEY']}"},
                               json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-limit-requests"] == "120"  # the quota's headers
        assert cli("ask", "hi", env=env).returncode == 0
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0
