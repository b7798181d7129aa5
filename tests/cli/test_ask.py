"""`cowork-llm ask`: the answer on stdout; one line on stderr and exit 2 / 1 on failure."""

import base64
import io
import json
import os
import socket
import subprocess
import sys

import pytest

from cowork_llm.cli import main
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters
from cowork_llm.testing import FakeLlmServer

KEY = "sk-cli-ask-SECRET-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh_limiters():
    yield
    _reset_global_rate_limiters()


@pytest.fixture
def server(monkeypatch):
    """A FakeLlmServer, configured for the command through COWORK_LLM_* variables."""
    with FakeLlmServer(api_key=KEY) as srv:
        for name, value in srv.env().items():
            monkeypatch.setenv(name, value)
        yield srv


def ask(capsys, *argv):
    code = main(["ask", *argv])
    out, err = capsys.readouterr()
    assert KEY not in out + err and KEY[-8:] not in out + err
    return code, out, err


def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_prints_the_answer_and_sends_the_prompt(server, capsys):
    code, out, err = ask(capsys, "Name a colour")
    assert (code, out, err) == (0, "echo: Name a colour\n", "")
    request = server.last_request
    assert request.messages == [{"role": "user", "content": "Name a colour"}]
    assert request.model == "fake-model" and request.api_key == KEY


def test_system_prompt_goes_first(server, capsys):
    code, out, _ = ask(capsys, "--system", "Answer in French", "Name a colour")
    assert code == 0 and out == "echo: Name a colour\n"
    assert server.last_request.messages == [
        {"role": "system", "content": "Answer in French"},
        {"role": "user", "content": "Name a colour"},
    ]


def test_dash_reads_the_prompt_from_stdin(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("first line\n  second line\n"))
    code, out, _ = ask(capsys, "-")
    assert code == 0
    assert server.last_request.messages[-1]["content"] == "first line\n  second line"
    assert out == "echo: first line\n  second line\n"


@pytest.mark.parametrize("argv, stdin, says", [
    (["-"], "  \n\n", "the prompt is empty (from stdin)"),
    (["   "], "", "the prompt is empty (from PROMPT)"),
    (["--system", " ", "hello"], "", "--system is empty"),
])
def test_an_empty_prompt_is_exit_2_and_sends_nothing(server, capsys, monkeypatch, argv, stdin, says):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, out, err = ask(capsys, *argv)
    assert code == 2 and out == ""
    assert says in one_line(err)
    assert server.request_count == 0


def test_stdin_that_is_not_text_is_exit_2(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9\n"), encoding="utf-8"))
    code, _, err = ask(capsys, "-")
    assert code == 2
    assert "stdin is not valid utf-8 text" in one_line(err)
    assert server.request_count == 0


def test_no_configuration_is_exit_2_naming_what_to_set(capsys):
    code, out, err = ask(capsys, "hello")
    assert code == 2 and out == ""
    line = one_line(err)
    assert line.startswith("cowork-llm: ConfigNotFoundError: no LLM configuration found")
    assert "COWORK_LLM_API_KEY" in line


def test_a_missing_config_file_is_exit_2_naming_it(capsys, tmp_path):
    missing = tmp_path / "nowhere.toml"
    code, _, err = ask(capsys, "--config", str(missing), "hello")
    assert code == 2 and str(missing) in one_line(err)


def test_config_option_reads_that_file(capsys, tmp_path):
    with FakeLlmServer(api_key=KEY) as srv:
        path = tmp_path / "mine.toml"
        path.write_text(f'[llm.model]\nbase_url = "{srv.base_url}"\napi_key = "{KEY}"\n'
                        f'model_name = "from-file"\n')
        os.chmod(path, 0o600)
        code, out, _ = ask(capsys, "--config", str(path), "hello")
        assert (code, out) == (0, "echo: hello\n")
        assert srv.last_request.model == "from-file"


def test_api_error_is_exit_1_in_one_line(server, capsys):
    server.fail_next(status=400, message="messages: too long")
    code, out, err = ask(capsys, "hello")
    assert code == 1 and out == ""
    line = one_line(err)
    assert line.startswith("cowork-llm: BadRequestError: ") and "400" in line


def test_a_503_is_retried_and_answered(server, capsys):
    server.fail_next(status=503)
    code, out, _ = ask(capsys, "hello")
    assert (code, out) == (0, "echo: hello\n")
    assert len(server.chat_requests) == 2


def test_an_unreachable_server_is_exit_1(server, capsys, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("COWORK_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("COWORK_LLM_RETRY_MAX_ATTEMPTS", "2")
    code, _, err = ask(capsys, "hello")
    assert code == 1 and one_line(err).startswith("cowork-llm: ApiConnectionError: ")


def test_debug_shows_the_traceback_but_not_the_key(server, capsys, monkeypatch):
    monkeypatch.setenv("COWORK_LOG_LEVEL", "debug")
    server.fail_next(status=400)
    code, _, err = ask(capsys, "hello")  # ask() checks the key is absent
    assert code == 1
    assert "Traceback" in err and "BadRequestError" in err.splitlines()[-1]


# --- a real process, as a user runs it ------------------------------------------------------


def run_module(server, *argv, stdin=""):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    env.update(server.env())
    return subprocess.run([sys.executable, "-m", "cowork_llm", "ask", *argv], input=stdin,
                          env=env, capture_output=True, text=True, timeout=60)


def test_python_m_cowork_llm_ask_reads_stdin_and_prints_the_answer(server):
    done = run_module(server, "--system", "Be brief", "-", stdin="What is a tide pool?\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "echo: What is a tide pool?\n", "")
    assert server.last_request.messages[0] == {"role": "system", "content": "Be brief"}


def test_python_m_cowork_llm_ask_failure_is_one_line_on_stderr(server):
    # A rejected key: the library logs a WARNING (key dropped) and an ERROR (call failed);
    # the command must still say it once, on one line, with no traceback and no key.
    server.fail_next(status=401)
    done = run_module(server, "hello")
    assert done.returncode == 1 and done.stdout == ""
    assert one_line(done.stderr).startswith("cowork-llm: AuthenticationError: ")
    assert KEY not in done.stderr and KEY[-8:] not in done.stderr


# --- request options: --model, --temperature, --max-tokens, --json, --schema, --image ---------


def test_model_temperature_and_max_tokens_go_into_the_request(server, capsys):
    code, out, _ = ask(capsys, "--model", "other-model", "--temperature", "0.3", "--max-tokens", "50", "hi")
    assert (code, out) == (0, "echo: hi\n")
    body = server.last_request.body
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("other-model", 0.3, 50)


def test_json_prints_the_parsed_object(server, capsys):
    code, out, _ = ask(capsys, "--json", "Describe Oslo")
    assert code == 0 and json.loads(out) == {}
    assert server.last_request.body["response_format"] == {"type": "json_object"}


def test_schema_prints_json_matching_it(server, capsys, tmp_path):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
              "required": ["city", "people"], "additionalProperties": False}
    path = tmp_path / "city.schema.json"
    path.write_text(json.dumps(schema))
    code, out, _ = ask(capsys, "--schema", str(path), "Describe Oslo")
    assert code == 0 and json.loads(out) == {"city": "text", "people": 1}
    sent = server.last_request.body["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "city_schema", "schema": schema}}


def test_images_become_parts_of_the_user_message(server, capsys, tmp_path):
    png = tmp_path / "chart.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    code, _, _ = ask(capsys, "--image", str(png), "--image", "https://example.com/b.jpg", "What is this?")
    assert code == 0
    content = server.last_request.messages[-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    encoded = base64.b64encode(png.read_bytes()).decode()
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + encoded
    assert content[2] == {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg"}}


@pytest.mark.parametrize("argv, says", [
    (["--image", "missing.png", "hi"], "--image missing.png: cannot read it"),
    (["--image", "notes.txt", "hi"], "--image notes.txt: not an image file"),
    (["--schema", "nope.json", "hi"], "--schema nope.json: cannot read it"),
    (["--temperature", "3", "hi"], "temperature must be a number from 0 to 2"),
    (["--max-tokens", "0", "hi"], "max_tokens must be an integer of at least 1"),
    (["--model", " ", "hi"], "--model is empty"),
    (["--stream", "--json", "hi"], "--stream prints text as it arrives"),
])
def test_a_bad_request_option_is_exit_2_in_one_line_and_sends_nothing(server, capsys, argv, says):
    code, out, err = ask(capsys, *argv)
    assert code == 2 and out == "" and says in one_line(err)
    assert server.request_count == 0


def test_a_schema_file_that_is_not_json_is_named(server, capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    code, _, err = ask(capsys, "--schema", str(path), "hi")
    assert code == 2 and f"--schema {path}: not JSON" in one_line(err)


def test_an_answer_that_does_not_match_the_schema_is_exit_1(capsys, monkeypatch, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"type": "object", "required": ["x"]}))
    with FakeLlmServer(api_key=KEY, reply=lambda messages: '{"y": 1}') as srv:
        for name, value in srv.env().items():
            monkeypatch.setenv(name, value)
        code, out, err = ask(capsys, "--schema", str(path), "hi")
    assert code == 1 and out == "" and "'x' is a required property" in one_line(err)
