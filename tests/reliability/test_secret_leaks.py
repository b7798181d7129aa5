"""Secret leaks: with every logger at DEBUG captured, the API key must appear nowhere —
log lines (with their tracebacks), exception text, reprs and chained causes, stdout,
stderr — through configuration loading, calls, every error path and every CLI command.

"Appears" includes partial leaks: any 8-character run of the key counts, which covers
the key minus a masked prefix or suffix (``mask_secret`` shows only ``sk-`` and the last
4 characters, both shorter than that).
"""

import io
import json
import logging
import traceback
from typing import Iterator, List

import pytest

from cowork_llm import create_llm_client
from cowork_llm.cli import main as cli_main
from cowork_llm.config import load_config
from cowork_llm.errors import InvalidBaseUrlError, LlmError
from cowork_llm.testing import FakeLlmServer

from ._helpers import SECRET_KEY

WINDOW = 8
FRAGMENTS = {SECRET_KEY[i:i + WINDOW] for i in range(len(SECRET_KEY) - WINDOW + 1)}


def leaks(text: str) -> List[str]:
    """The pieces of the key found in ``text``."""
    return sorted(f for f in FRAGMENTS if f in text)


def test_the_leak_detector_catches_partial_keys():
    assert leaks(f"key={SECRET_KEY}")
    assert leaks(SECRET_KEY[3:-4])  # the key minus what mask_secret shows
    assert leaks(SECRET_KEY[10:20])
    assert not leaks("sk-…89zz and 'sk-…89zz'")  # the mask itself is fine


class Capture(logging.Handler):
    """Every record of every logger, formatted with its traceback and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


@pytest.fixture
def logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    logging.getLogger("cowork_llm").setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


def exception_text(error: BaseException) -> str:
    """str, repr, args and the whole formatted chain (causes and contexts)."""
    parts = [str(error), repr(error), repr(error.args),
             "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    seen = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(vars(current)) if hasattr(current, "__dict__") else ""]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def assert_clean(logs: Capture, *texts: str) -> None:
    found = leaks("\n".join(logs.lines))
    assert not found, f"the key leaked into the logs: {found[:3]}"
    for text in texts:
        found = leaks(text)
        assert not found, f"the key leaked: {found[:3]} in {text[:300]!r}"
    assert logs.lines, "nothing was logged: the capture is not working"


# --- configuration -----------------------------------------------------------------------


def test_loading_from_a_file_and_from_the_environment(logs, monkeypatch, tmp_path):
    (tmp_path / "config.toml").write_text(
        f'[llm.model]\nbase_url = "https://api.example.com/v1"\napi_key = "{SECRET_KEY}"\n'
        'model_name = "m"\n')
    (tmp_path / "config.toml").chmod(0o644)  # readable by others: the loader warns about it
    from_file = load_config()
    (tmp_path / "config.toml").unlink()
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_API_KEY", SECRET_KEY)
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    from_env = load_config()
    assert from_file.model.api_key == from_env.model.api_key == SECRET_KEY
    assert_clean(logs, repr(from_file), str(from_env), repr(from_env.model), str(from_env.sources))


@pytest.mark.parametrize("bad", [
    {"COWORK_LLM_TEMPERATURE": "hot"},
    {"COWORK_LLM_BASE_URL": "ftp://x"},
    {"COWORK_LLM_PROVIDER": "nope"},
    {"COWORK_LLM_MODEL_NAME": " "},
])
def test_configuration_errors(logs, monkeypatch, bad):
    env = {"COWORK_LLM_BASE_URL": "https://api.example.com/v1", "COWORK_LLM_API_KEY": SECRET_KEY,
           "COWORK_LLM_MODEL_NAME": "m", **bad}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(LlmError) as caught:
        create_llm_client()
    logging.getLogger("test").debug("error", exc_info=caught.value)
    assert_clean(logs, exception_text(caught.value))


def test_a_key_with_a_space_names_the_problem_without_showing_the_key(logs, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    monkeypatch.setenv("COWORK_LLM_API_KEY", SECRET_KEY[:20] + " " + SECRET_KEY[20:])
    with pytest.raises(LlmError) as caught:
        load_config()
    logging.getLogger("test").debug("error", exc_info=caught.value)
    assert_clean(logs, exception_text(caught.value))


# --- calls and every error path ---------------------------------------------------------------

FAULTS = {
    "success": lambda s: None,
    "500 then success": lambda s: s.fail_next(500),
    "429 Retry-After then success": lambda s: s.fail_next(429, retry_after_ms=10),
    "500 x3": lambda s: s.fail_next(500, times=3),
    "503 x3": lambda s: s.fail_next(503, times=3),
    "400": lambda s: s.fail_next(400),
    "401": lambda s: s.fail_next(401),
    "404": lambda s: s.fail_next(404),
    "quota": lambda s: s.quota_exceeded_next(),
    "dropped x3": lambda s: s.drop_next(times=3),
    "read timeout": lambda s: s.delay_next(2.0, times=3),
    "malformed": lambda s: s.malformed_next(),
    "no choices": lambda s: s.empty_choices_next(),
    # A provider that echoes the key back in its error message, or its body.
    "401 echoing the key": lambda s: s.fail_next(
        401, body={"error": {"message": f"Incorrect API key provided: {SECRET_KEY}.",
                             "type": "invalid_request_error", "code": "invalid_api_key"}}),
    "500 text body echoing the key": lambda s: s.fail_next(500, times=3, body=f"bad key {SECRET_KEY}"),
    "400 echoing a partial key": lambda s: s.fail_next(
        400, body={"error": {"message": f"key {SECRET_KEY[3:-4]} is malformed"}}),
}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_calls_and_error_paths(logs, server, provider, fault):
    llm = create_llm_client(server.config(provider=provider, max_attempts=3, timeout_seconds=0.2))
    FAULTS[fault](server)
    texts = [repr(llm), str(llm)]
    try:
        texts.append(repr(llm.chat([{"role": "user", "content": "hello"}])))
    except LlmError as error:
        logging.getLogger("test").debug("call failed", exc_info=error)
        texts.append(exception_text(error))
    texts.append(repr(server.requests))
    llm.close()
    assert server.request_count >= 1
    assert_clean(logs, *texts)


def test_a_wrong_key_the_server_rejects(logs, server):
    # The server knows only SECRET_KEY; the client sends another distinctive key.
    other = "sk-relia-OTHERkeyWRONG-9876543210yy"
    config = server.config(api_key=other, max_attempts=1)
    llm = create_llm_client(config)
    with pytest.raises(LlmError) as caught:
        llm.generate_content("hi")
    text = exception_text(caught.value)
    assert "OTHERkeyWRONG" not in text and "OTHERkeyWRONG" not in "\n".join(logs.lines)
    assert_clean(logs, text)


def test_streaming_when_available(logs, server):
    llm = create_llm_client(server.config())
    if not hasattr(llm, "stream"):
        pytest.skip("the client does not stream yet")
    server.fail_mid_stream_next(after_chunks=1)
    texts = []
    try:
        texts.append("".join(llm.stream([{"role": "user", "content": "a longer prompt here"}])))
    except LlmError as error:
        logging.getLogger("test").debug("stream failed", exc_info=error)
        texts.append(exception_text(error))
    assert_clean(logs, *texts)


# --- the key inside the base URL ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["query", "userinfo", "fragment"])
def test_a_key_inside_base_url_is_refused_without_showing_it(logs, server, monkeypatch, where):
    # Some gateways take the key in the URL (?api-key=...). A base_url is logged and shown
    # in errors, so one carrying credentials is refused at once, without repeating it.
    url = {"query": f"{server.base_url}?api-key={SECRET_KEY}",
           "userinfo": server.base_url.replace("http://", f"http://user:{SECRET_KEY}@"),
           "fragment": f"{server.base_url}#{SECRET_KEY}"}[where]
    with pytest.raises(InvalidBaseUrlError) as from_code:
        server.config(base_url=url)
    monkeypatch.setenv("COWORK_LLM_BASE_URL", url)
    monkeypatch.setenv("COWORK_LLM_API_KEY", SECRET_KEY)
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    with pytest.raises(InvalidBaseUrlError) as from_env:
        create_llm_client()
    logging.getLogger("test").debug("refused", exc_info=from_env.value)
    assert "127.0.0.1" in str(from_code.value)  # it still says which URL it means
    assert_clean(logs, exception_text(from_code.value), exception_text(from_env.value))


# --- the command line ----------------------------------------------------------------------------


def run_cli(argv: List[str], capsys: pytest.CaptureFixture, stdin: str = "") -> str:
    """Run the CLI in-process; return everything it printed plus its exit status."""
    import sys

    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        status = cli_main(argv)
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    finally:
        sys.stdin = old_stdin
    out, err = capsys.readouterr()
    return f"exit {status}\n{out}\n{err}"


@pytest.fixture
def cli_env(server, monkeypatch):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COWORK_LOG_LEVEL", "debug")
    return server


def _batch_input(tmp_path) -> List[str]:
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n"
                                               for i in range(3)))
    # "--progress none": an invalid choice here made argparse exit before the batch ran.
    return ["batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--progress", "none"]


COMMANDS = {
    "init": lambda tmp: ["init"],
    "init --template": lambda tmp: ["init", "--template"],
    "ask": lambda tmp: ["ask", "hello"],
    "ask --stream": lambda tmp: ["ask", "--stream", "hello"],
    "health": lambda tmp: ["health"],
    "batch": _batch_input,
}
CLI_FAULTS = {
    "healthy": lambda s: None,
    "401 echoing the key": lambda s: s.fail_next(
        401, times=20, body={"error": {"message": f"Incorrect API key provided: {SECRET_KEY}"}}),
    "dropped": lambda s: s.drop_next(times=20),
    "500 echoing the key": lambda s: s.fail_next(500, times=20, body=f"bad key {SECRET_KEY}"),
}


@pytest.mark.parametrize("fault", list(CLI_FAULTS), ids=list(CLI_FAULTS))
@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
def test_every_cli_command(logs, cli_env, capsys, tmp_path, monkeypatch, command, fault):
    monkeypatch.setenv("COWORK_LLM_RETRY_MAX_ATTEMPTS", "2")
    CLI_FAULTS[fault](cli_env)
    printed = run_cli(COMMANDS[command](tmp_path), capsys)
    assert "usage:" not in printed, printed  # the command ran: argparse did not refuse it
    outputs = [printed]
    if command == "batch":  # it ran: at least one line (a 401 stops the batch after one)
        outputs.append((tmp_path / "out.jsonl").read_text())
        assert outputs[-1].count("\n") >= 1
    assert_clean(logs, *outputs)


@pytest.mark.parametrize("command", ["init", "ask", "health"])
def test_cli_with_a_config_error(logs, cli_env, capsys, monkeypatch, command):
    monkeypatch.setenv("COWORK_LLM_TEMPERATURE", "hot")
    argv = [command] + (["hi"] if command == "ask" else [])
    printed = run_cli(argv, capsys)
    assert "exit 2" in printed
    assert_clean(logs, printed)


def test_fake_server_env_carries_the_key_only_where_it_belongs(server):
    # A sanity check of the CLI fixture itself: the key is really in play.
    assert server.env()["COWORK_LLM_API_KEY"] == SECRET_KEY
    assert FakeLlmServer  # imported for the fixture's type


# --- what else holds the key: pickles, object graphs, raw bodies, request ids -------------------


_PLAIN = (str, bytes, list, tuple, dict, set, frozenset)


def _object_graph_text(root: object, depth: int = 4) -> str:
    """repr of ``root`` and of every object reachable through attributes, ``depth``
    levels deep. Plain strings and containers are skipped: the key has to be stored
    somewhere (``config.api_key``); what matters is that no object's repr shows it."""
    parts, seen, frontier = [], set(), [root]
    for _ in range(depth):
        following = []
        for obj in frontier:
            if id(obj) in seen or isinstance(obj, _PLAIN):
                continue
            seen.add(id(obj))
            parts.append(repr(obj))
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                following += list(attributes.values())
        frontier = following
    return "\n".join(parts)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_client_object_graph_shows_no_key(logs, server, provider):
    # repr(client), repr(provider), its config, sessions, limiter, retry policy and what
    # they hold; only the key rotation itself holds the key (and its repr masks it).
    llm = create_llm_client(server.config(provider=provider))
    result = llm.chat([{"role": "user", "content": "hello"}])
    graph = _object_graph_text(llm)
    assert "KeyRotation(" in graph and "ModelConfig(" in graph  # the walk reached them
    texts = [graph, repr(vars(result)), json.dumps(result.raw)]
    llm.close()
    assert_clean(logs, *texts)


@pytest.mark.parametrize("fault", ["401 echoing the key", "500 text body echoing the key", "dropped x3"])
def test_pickled_errors_hold_no_key(logs, server, fault):
    import pickle

    llm = create_llm_client(server.config(max_attempts=3, timeout_seconds=0.2))
    FAULTS[fault](server)
    with pytest.raises(LlmError) as caught:
        llm.chat([{"role": "user", "content": "hello"}])
    llm.close()
    data = pickle.dumps(caught.value)
    again = pickle.loads(data)
    assert type(again) is type(caught.value) and str(again) == str(caught.value)
    assert SECRET_KEY.encode() not in data and SECRET_KEY[3:20].encode() not in data
    assert_clean(logs, exception_text(again))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_request_id_header_echoing_the_key_is_redacted_everywhere(logs, server, provider):
    # A proxy that copies the Authorization header into x-request-id: the id appears in
    # the error text and the "call failed" log line.
    server.fail_next(500, times=2, headers={"x-request-id": f"Bearer {SECRET_KEY}"})
    llm = create_llm_client(server.config(provider=provider, max_attempts=2))
    with pytest.raises(LlmError) as caught:
        llm.chat([{"role": "user", "content": "hello"}])
    llm.close()
    logging.getLogger("test").debug("failed", exc_info=caught.value)
    assert caught.value.request_id and "[REDACTED]" in caught.value.request_id
    assert_clean(logs, exception_text(caught.value))


def test_the_debug_traceback_of_the_cli_shows_no_key(logs, cli_env, capsys, monkeypatch):
    # COWORK_LOG_LEVEL=debug prints the traceback, requests' exceptions chained in: their
    # text, never the request's headers.
    monkeypatch.setenv("COWORK_LLM_RETRY_MAX_ATTEMPTS", "1")
    cli_env.drop_next(times=5)
    printed = run_cli(["ask", "hello"], capsys)
    assert "exit 1" in printed and "Traceback" in printed and "ApiConnectionError" in printed
    assert_clean(logs, printed)


def _locals_traceback(error: BaseException) -> str:
    """What an error reporter with ``capture_locals=True`` (Sentry-like) would record: every
    frame's locals, the chained causes' frames included."""
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("where", ["refused", "read timeout", "500 x3"])
def test_captured_locals_of_a_failing_call_show_no_key(logs, server, provider, where):
    import socket

    base_url = server.base_url
    if where == "refused":  # fails inside urllib3's connect: its frames hold the headers
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    else:
        FAULTS[where](server)
    config = server.config(provider=provider, max_attempts=1, timeout_seconds=0.2)
    model = type(config.model)(**{**config.model.to_dict(), "base_url": base_url})
    config = type(config)(model=model, rate_limit=config.rate_limit, retry=config.retry)
    with create_llm_client(config) as llm:
        with pytest.raises(LlmError) as caught:
            llm.chat([{"role": "user", "content": "hello"}])
    text = _locals_traceback(caught.value)
    assert "_send" in text and "key = ApiKey(" in text  # the provider's frame and its locals are there
    assert_clean(logs, text)
