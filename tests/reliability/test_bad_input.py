"""Bad input gets a clear error and loses nothing: config files that are not what they
seem, values at the edges of their types, keys that cannot be sent, provider answers that
are not answers, batch files and output paths that are not usable — and at the command
line one line on stderr, the right exit code, no traceback.

Every case here broke once (a hang, a traceback, a raw OverflowError or RecursionError,
a key in a request id); each test names what it guards against.
"""

import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from cowork_llm import create_llm_client
from cowork_llm.batch import run_batch
from cowork_llm.cli import main as cli_main
from cowork_llm.config import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig, load_config
from cowork_llm.config._file import MAX_CONFIG_BYTES
from cowork_llm.errors import (
    BatchOutputError,
    ConfigError,
    InvalidBaseUrlError,
    InvalidResponseError,
    MissingApiKeyError,
)
from cowork_llm.secrets import run_key_command
from cowork_llm.testing import MockLlm

from ._helpers import SECRET_KEY

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX files and programs")

GOOD_MODEL = ('[llm.model]\nbase_url = "https://api.example.com/v1"\n'
              'api_key = "sk-abcdefghijklmnop"\nmodel_name = "m"\n')


def cli(argv: List[str], capsys: pytest.CaptureFixture) -> Tuple[int, str, str]:
    try:
        status = cli_main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_clean_line(err: str) -> str:
    """stderr holds one error line (plus, at most, log warnings) and no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("cowork-llm")]
    assert len(lines) == 1, err
    return lines[0]


# --- the config file -----------------------------------------------------------------------


@pytest.mark.parametrize("content, problem", [
    pytest.param(b"[llm]\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply", id="deep-nesting"),
    pytest.param(b"[llm]\nx = " + b"9" * 5000 + b"\n", "integer string conversion", id="5000-digit-int"),
    pytest.param(GOOD_MODEL.encode("utf-16"), "UTF-16", id="utf-16"),
    pytest.param(b'[llm]\na = "\xff"\n', "not UTF-8 text (byte 12)", id="invalid-utf-8"),
])
def test_an_unparsable_file_is_an_error_when_named_else_a_warning_then_the_environment(
        tmp_path, monkeypatch, caplog, content, problem):
    # Was: RecursionError / ValueError tracebacks out of load_config for the first two.
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)
    assert "set_int_max_str_digits" not in str(caught.value)  # Python's advice is not ours
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_API_KEY", "sk-abcdefghijklmnop")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "from-env")
    with pytest.raises(ConfigError, match="named by"):  # a file named explicitly must parse
        load_config(path)
    monkeypatch.chdir(tmp_path)  # the implicit ./config.toml is skipped for the environment
    assert load_config().model.model_name == "from-env"
    assert any(problem in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    # Notepad writes one; tomllib rejects it ("Invalid statement at line 1, column 1").
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_MODEL.encode())
    assert load_config(path).model.model_name == "m"


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "config.toml"
    with open(path, "wb") as fh:
        fh.truncate(MAX_CONFIG_BYTES * 50)  # sparse: big, but costs no disk
    with pytest.raises(ConfigError, match="larger than") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


@posix_only
def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path, monkeypatch):
    # Was: open() blocked forever waiting for a writer.
    monkeypatch.setattr("cowork_llm.config._file.PIPE_WAIT_SECONDS", 0.2)
    path = tmp_path / "config.toml"
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="pipe or device") as caught:
        load_config(path)
    assert time.monotonic() - started < 5
    assert str(path) in str(caught.value)


@posix_only
def test_a_fifo_with_a_writer_is_read(tmp_path):
    # `--config <(sops -d config.toml)` hands over a pipe: it keeps working.
    path = tmp_path / "config.toml"
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as fh:  # blocks until the loader opens the other end
            fh.write(GOOD_MODEL.encode())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert load_config(path).model.model_name == "m"
    writer.join(5)


@posix_only
def test_a_device_as_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="larger than"):
        load_config("/dev/zero")


@pytest.mark.parametrize("toml", [
    '[llm]\nmodel = "gpt-4o"\n',
    "[llm]\nrate_limit = [1, 2]\n",
    "[llm]\npricing = 5\n",
    '[llm.pricing]\nm = 5\n',
])
def test_a_misshapen_table_names_the_file(tmp_path, toml):
    path = tmp_path / "config.toml"
    path.write_text((GOOD_MODEL if "model =" not in toml else "") + toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


# --- values at the edges ---------------------------------------------------------------------


@pytest.mark.parametrize("section, field", [
    ("model", "timeout_seconds"),
    ("rate_limit", "min_interval_seconds"),
    ("rate_limit", "acquire_timeout_seconds"),
    ("retry", "initial_wait_seconds"),
    ("retry", "max_wait_seconds"),
    ("retry", "max_retry_after_seconds"),
    ("retry", "total_timeout_seconds"),
])
@pytest.mark.parametrize("value", ["1e10", "1e308"])
def test_waits_and_timeouts_beyond_a_year_are_config_errors(monkeypatch, section, field, value):
    # Was: accepted, then an OverflowError mid-call (socket.settimeout, time.sleep) for
    # anything above ~9.2e9 s, e.g. timeout_seconds = 1e10 or a Retry-After under a
    # max_retry_after_seconds of 1e300.
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_API_KEY", "sk-abcdefghijklmnop")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    variable = f"COWORK_LLM_{'' if section == 'model' else section.upper() + '_'}{field.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"llm.{section}.{field} must be at most") as caught:
        load_config()
    assert variable in str(caught.value)


def test_a_year_is_still_accepted():
    assert RetryConfig(total_timeout_seconds=365 * 24 * 3600.0).total_timeout_seconds > 0


@pytest.mark.parametrize("url, says", [
    ("http://[::1/v1", "not a URL"),  # was: a bare ValueError from urlsplit
    ("https://api.exa mple.com/v1", "spaces"),  # was: accepted; every call an ApiConnectionError
    ("https://api.example.com/v1 ", "spaces"),
    ("https://api.example.com:99999/v1", "invalid port"),
    ("https://api.example.com:abc/v1", "invalid port"),
    ("https://api.example.com:0/v1", "invalid port"),
])
def test_a_base_url_that_cannot_work_is_refused_when_loaded(url, says):
    with pytest.raises(InvalidBaseUrlError, match=says):
        ModelConfig(url, "sk-abcdefghijklmnop", "m")


@pytest.mark.parametrize("url", ["http://[::1]:8080/v1", "https://bücher.example/v1",
                                 "HTTPS://API.EXAMPLE.COM/v1", "https://api.example.com:443/v1"])
def test_unusual_but_valid_base_urls_still_load(url):
    assert ModelConfig(url, "sk-abcdefghijklmnop", "m").base_url == url


@pytest.mark.parametrize("odd", ["\u200b", "\u20ac", "\xe9", "\x7f", "\x00"])
def test_a_key_that_cannot_go_into_a_header_is_refused_without_showing_it(odd):
    # Was: accepted, then a raw UnicodeEncodeError at call time whose repr (args) held
    # "Bearer <the whole key>".
    key = SECRET_KEY[:12] + odd + SECRET_KEY[12:]
    with pytest.raises(MissingApiKeyError) as caught:
        ModelConfig("https://api.example.com/v1", key, "m")
    text = str(caught.value) + repr(caught.value)
    assert f"U+{ord(odd):04X}" in text and "character 13" in text
    assert SECRET_KEY[:12] not in text and SECRET_KEY[12:] not in text


# --- api_key_command -------------------------------------------------------------------------


@posix_only
def test_a_script_without_a_shebang_line_is_a_missing_key_error(tmp_path):
    # Was: a raw OSError (Exec format error) out of create_llm_client.
    script = tmp_path / "key.sh"
    script.write_text("echo sk-abcdefghijklmnop\n")
    script.chmod(0o700)
    with pytest.raises(MissingApiKeyError, match="cannot be run: Exec format error"):
        run_key_command(str(script))


@posix_only
def test_a_program_path_through_a_file_is_a_missing_key_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MissingApiKeyError, match="cannot be run"):
        run_key_command(str(tmp_path / "file" / "prog"))


@posix_only
def test_a_command_printing_megabytes_is_not_taken_for_a_key():
    command = f"{sys.executable} -c \"print('a' * 2_000_000)\""
    with pytest.raises(MissingApiKeyError, match="2000000 characters"):
        run_key_command(command)


@posix_only
def test_the_cli_reports_a_broken_key_command_in_one_line(tmp_path, monkeypatch, capsys):
    script = tmp_path / "key.sh"
    script.write_text("echo sk-abcdefghijklmnop\n")
    script.chmod(0o700)
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    monkeypatch.setenv("COWORK_LLM_API_KEY_COMMAND", str(script))
    status, _, err = cli(["ask", "hi"], capsys)
    assert status == 2
    assert "api_key_command" in assert_one_clean_line(err)


# --- provider answers ----------------------------------------------------------------------


class _RawHandler(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's ``answer``: (status, headers, body)."""

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def raw_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RawHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _client(server: http.server.ThreadingHTTPServer, provider: str):  # type: ignore[no-untyped-def]
    url = f"http://127.0.0.1:{server.server_port}/v1"
    return create_llm_client(LlmConfig(ModelConfig(url, SECRET_KEY, "m", provider=provider),
                                       RateLimitConfig(min_interval_seconds=0),
                                       RetryConfig(max_attempts=1)))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [200, 400, 500])
def test_a_body_nested_thousands_deep_is_an_invalid_response(raw_server, provider, status):
    # Was: RecursionError out of chat() (json raises it, not ValueError).
    raw_server.answer = (status, {"Content-Type": "application/json"}, b"[" * 100_000 + b"]" * 100_000)
    with _client(raw_server, provider) as llm:
        with pytest.raises(Exception) as caught:
            llm.chat([{"role": "user", "content": "hi"}])
    assert not isinstance(caught.value, RecursionError)
    if status == 200:
        assert isinstance(caught.value, InvalidResponseError)
    assert caught.value.status_code == status  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [200, 500])
def test_a_request_id_echoing_the_key_is_redacted(raw_server, provider, status):
    # Was: "request id Bearer sk-..." in the error text; request ids were not redacted.
    body = (b"oops" if status != 200 else json.dumps(
        {"id": f"echo {SECRET_KEY}", "choices": [{"message": {"content": "hi"}}],
         "content": [{"type": "text", "text": "hi"}]}).encode())
    raw_server.answer = (status, {"x-request-id": f"Bearer {SECRET_KEY}", "Content-Type": "application/json"},
                         body)
    with _client(raw_server, provider) as llm:
        try:
            result = llm.chat([{"role": "user", "content": "hi"}])
            shown = f"{result!r} {result.request_id}"
        except Exception as error:  # noqa: BLE001 -- any error: its text is what is checked
            shown = f"{error} {error!r}"
    assert SECRET_KEY[3:20] not in shown
    assert "Bearer" in shown  # the request id is still there, redacted


def test_a_request_id_from_the_body_is_redacted_too(raw_server):
    raw_server.answer = (200, {"Content-Type": "application/json"}, json.dumps(
        {"id": f"id-{SECRET_KEY}", "choices": [{"message": {"content": "hi"}}]}).encode())
    with _client(raw_server, "openai") as llm:
        result = llm.chat([{"role": "user", "content": "hi"}])
    assert result.request_id is not None and SECRET_KEY[3:20] not in result.request_id


# --- batch input and output ----------------------------------------------------------------


@pytest.fixture
def batch_env(monkeypatch):
    # Nothing listens on port 9: any request that slipped through would fail, not hang.
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("COWORK_LLM_API_KEY", "sk-abcdefghijklmnop")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    monkeypatch.setenv("COWORK_LLM_RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("COWORK_LLM_RATE_LIMIT_MIN_INTERVAL_SECONDS", "0")


def _batch(tmp_path: Path, lines: bytes, capsys, output: str = "out.jsonl") -> Tuple[int, str]:
    (tmp_path / "in.jsonl").write_bytes(lines)
    status, _, err = cli(["batch", str(tmp_path / "in.jsonl"), "-o", output, "--progress", "none"], capsys)
    assert "Traceback" not in err, err
    return status, err


@pytest.mark.parametrize("line, says", [
    pytest.param(b'{"id": ' + b"9" * 5000 + b', "prompt": "x"}', "more than 4300 digits", id="5000-digit-id"),
    pytest.param(b'{"id": 1, "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply",
                 id="deep-nesting"),
    pytest.param(b'{"id": 1, "prompt": "x", "temperature": NaN}', "temperature", id="temperature-NaN"),
    pytest.param(b'{"id": 1, "prompt": "x", "temperature": 1e999}', "temperature", id="temperature-inf"),
    pytest.param(b'{"id": 1, "prompt": "x", "temperature": -3}', "temperature", id="temperature-negative"),
    pytest.param(b'{"id": 1, "prompt": "x", "temperature": 7}', "temperature", id="temperature-7"),
])
def test_bad_batch_lines_are_reported_before_anything_is_sent(tmp_path, capsys, batch_env, line, says):
    # Was: tracebacks (ValueError, RecursionError) for the first two, and for the
    # temperatures a run that sent nothing useful and recorded per-item failures.
    status, err = _batch(tmp_path, b'{"id": 0, "prompt": "ok"}\n' + line + b"\n", capsys)
    assert status == 2
    assert "line 2: " in err and says in err and "nothing was sent" in err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: p.mkdir(), id="a-directory"),
    pytest.param(lambda p: os.mkfifo(p), id="a-fifo", marks=posix_only),
])
def test_an_output_that_is_not_a_regular_file_is_refused(tmp_path, capsys, batch_env, make):
    # Was: IsADirectoryError traceback; for a FIFO a hang reading it back.
    make(tmp_path / "out.jsonl")
    status, err = _batch(tmp_path, b'{"id": 0, "prompt": "ok"}\n', capsys, str(tmp_path / "out.jsonl"))
    assert status == 2
    assert "out.jsonl is" in assert_one_clean_line(err)


@posix_only
def test_dev_null_as_output_is_refused_and_no_lock_file_is_made_beside_it():
    # Was: "/dev/null.lock" created (as root), then an OSError traceback from fsync.
    with pytest.raises(BatchOutputError, match="not a regular file"):
        run_batch(MockLlm(), [{"id": 1, "prompt": "x"}], "/dev/null")
    assert not os.path.exists("/dev/null.lock")


@pytest.mark.parametrize("blocker", ["out.jsonl.lock", "out.jsonl.torn", "out.jsonl.rewrite"])
def test_an_unwritable_companion_file_is_one_line_and_keeps_the_output(tmp_path, capsys, batch_env, blocker):
    # Was: IsADirectoryError tracebacks (exit 1) from the lock, the torn-line copy and the
    # rewrite on resume. The output itself is left exactly as it was.
    output = tmp_path / "out.jsonl"
    before = (b'{"id": 0, "error": {"type": "ServerError", "message": "m", "status_code": 500}}\n'
              + (b'{"id": 1, "outp' if blocker.endswith(".torn") else b""))
    output.write_bytes(before)
    (tmp_path / blocker).mkdir()
    status, err = _batch(tmp_path, b'{"id": 0, "prompt": "ok"}\n', capsys, str(output))
    assert status == 2
    line = assert_one_clean_line(err)
    assert blocker in line and "rerun" in line
    assert output.read_bytes() == before


def test_a_torn_line_in_the_middle_stops_with_its_line_number_and_changes_nothing(tmp_path, capsys,
                                                                                  batch_env):
    output = tmp_path / "out.jsonl"
    before = b'{"id": 0, "output": "a"}\n{"id": 1, "out\n{"id": 2, "output": "c"}\n'
    output.write_bytes(before)
    status, err = _batch(tmp_path, b'{"id": 0, "prompt": "ok"}\n', capsys, str(output))
    assert status == 2
    assert "line 2 is not a batch result" in assert_one_clean_line(err)
    assert output.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_an_empty_batch_is_a_success_that_sends_nothing(tmp_path, capsys, batch_env, content):
    status, err = _batch(tmp_path, content, capsys)
    assert status == 0
    assert "0 succeeded, 0 failed (of 0)" in err
