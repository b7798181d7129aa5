"""`cowork-llm health`: one line, exit 0 / 1 / 2, never the key."""

import os
import socket
import subprocess
import sys

import pytest

from cowork_llm.cli import main
from cowork_llm.testing import FakeLlmServer

KEY = "sk-cli-health-SECRET-0123456789abcdef"


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as srv:
        yield srv


def write_config(base_url, api_key=KEY, path="config.toml", extra=""):
    with open(path, "w") as f:
        f.write(f'[llm.model]\nbase_url = "{base_url}"\napi_key = "{api_key}"\n'
                f'model_name = "fake-model"\n{extra}')
    os.chmod(path, 0o600)
    return path


def run_cli(capsys, *argv):
    code = main(["health", *argv])
    out, err = capsys.readouterr()
    assert KEY not in out + err and KEY[-8:] not in out + err
    return code, out, err


def test_healthy_is_one_line_then_the_limits_and_exit_0(server, capsys):
    write_config(server.base_url)
    code, out, err = run_cli(capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("healthy: openai fake-model at 127.0.0.1: ok (HTTP 200), ")
    assert lines[0].endswith(" ms")
    # then the rate limits: configured, and nothing learned yet by a fresh process
    assert lines[1].startswith("rate limit 'default': min_interval_seconds=")
    assert lines[2:] == ["  learned from the provider: nothing yet"]
    assert [r.path for r in server.requests] == ["/v1/models"]


def test_config_option_names_the_file(server, capsys, tmp_path):
    path = write_config(server.base_url, path=str(tmp_path / "elsewhere.toml"))
    code, out, _ = run_cli(capsys, "--config", path)
    assert code == 0 and out.startswith("healthy:")


def test_wrong_key_is_exit_1_and_says_401(server, capsys):
    write_config(server.base_url, api_key="sk-wrong-key-0000000000000000")
    code, out, _ = run_cli(capsys)
    assert code == 1
    assert out.startswith("unhealthy: openai fake-model at 127.0.0.1: authentication failed (HTTP 401)")
    assert "sk-wrong-key" not in out


def test_server_error_is_exit_1_and_says_5xx(server, capsys):
    write_config(server.base_url)
    server.fail_next(status=503)
    code, out, _ = run_cli(capsys)
    assert code == 1 and "server error (HTTP 503)" in out


def test_down_is_exit_1_and_says_refused(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_config(f"http://127.0.0.1:{port}/v1")
    code, out, _ = run_cli(capsys)
    assert code == 1 and "connection refused" in out


def test_no_configuration_is_exit_2(capsys):
    code, out, err = run_cli(capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "ConfigNotFoundError" in err


def test_an_invalid_configuration_is_exit_2(capsys):
    write_config("api.example.com/v1")
    code, out, err = run_cli(capsys)
    assert code == 2 and out == ""
    assert "base_url" in err and "https://api.example.com/v1" in err


def test_plain_http_to_a_remote_host_is_exit_2_before_any_request(capsys):
    write_config("http://api.example.com/v1")
    code, out, err = run_cli(capsys)
    assert code == 2 and out == ""
    assert "allow_insecure_http" in err


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_a_bad_timeout_is_a_usage_error(capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["health", "--timeout", value])
    assert exit_info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_the_real_command_line_end_to_end(server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    env.update(server.env())
    env["COWORK_LOG_LEVEL"] = "debug"  # even at debug, the key never shows
    done = subprocess.run([sys.executable, "-m", "cowork_llm", "health", "--timeout", "3"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("healthy: openai fake-model at 127.0.0.1: ok (HTTP 200)")
    assert KEY not in done.stdout + done.stderr
