"""Secret sources: api_key_command (no shell, 10 s timeout, stderr in errors, never
stdout) and keyring: references (the real keyring package with an in-memory backend)."""

import shlex
import sys

import pytest

from cowork_llm import create_llm_client
from cowork_llm.config import ModelConfig
from cowork_llm.errors import MissingApiKeyError
from cowork_llm.providers import build_provider
from cowork_llm.secrets import read_keyring, resolve_api_keys, run_key_command
from cowork_llm.testing import FakeLlmServer

KEY = "sk-from-command-0123456789"
PY = shlex.quote(sys.executable)


def python_command(code):
    return f"{PY} -c {shlex.quote(code)}"


def make_config(**overrides):
    fields = {"base_url": "https://api.example.com/v1", "api_key": "", "model_name": "m",
              "api_key_command": python_command(f"print('  {KEY}  ')")}
    fields.update(overrides)
    return ModelConfig(**fields)


# --- api_key_command ------------------------------------------------------------------------------


def test_command_output_is_stripped_and_becomes_the_first_key():
    resolved = resolve_api_keys(make_config(extra_api_keys=("sk-extra-000000000000",)))
    assert resolved.api_keys == (KEY, "sk-extra-000000000000")
    assert "api_key='sk-…6789'" in repr(resolved)  # masked like any configured key


def test_command_runs_without_a_shell():
    # a shell would expand $HOME and run the second command after ';'
    out = run_key_command(python_command("import sys; print(sys.argv[1])") + " '$HOME;echo'")
    assert out == "$HOME;echo"


def test_failure_reports_the_first_stderr_line_and_never_stdout():
    code = (f"import sys; print('{KEY}'); "
            "sys.stderr.write('gpg: decryption failed\\nmore detail\\n'); sys.exit(2)")
    with pytest.raises(MissingApiKeyError) as info:
        run_key_command(python_command(code))
    text = str(info.value)
    assert "llm.model.api_key_command" in text and "exit status 2" in text
    assert "gpg: decryption failed" in text and "more detail" not in text
    assert KEY not in text


def test_timeout_is_enforced():
    with pytest.raises(MissingApiKeyError, match="did not finish within 0.3 s"):
        run_key_command(python_command("import time; time.sleep(30)"), timeout=0.3)


@pytest.mark.parametrize("command, message", [
    ("no-such-program-cowork --x", "not found"),
    ("", "is empty"),
    ("pass show 'unclosed", "cannot be parsed"),
    (python_command("pass"), "printed nothing"),
    (python_command("print('line-one-key'); print('second line')"), "more than a key"),
])
def test_unusable_commands(command, message):
    with pytest.raises(MissingApiKeyError, match=message):
        run_key_command(command)


def test_the_default_timeout_is_ten_seconds():
    from cowork_llm import secrets

    assert secrets.KEY_COMMAND_TIMEOUT_SECONDS == 10.0


def test_build_provider_runs_the_command_once(tmp_path):
    counter = tmp_path / "runs"
    code = f"open({str(counter)!r}, 'a').write('x'); print('{KEY}')"
    with build_provider(make_config(api_key_command=python_command(code))) as llm:
        assert llm._keys.current() == KEY
    assert counter.read_text() == "x"


def test_the_key_from_a_command_is_used_against_a_server():
    with FakeLlmServer(api_key=KEY) as server:
        config = server.config(api_key="", api_key_command=python_command(f"print('{KEY}')"))
        with create_llm_client(config) as llm:
            assert llm.generate_content("x") == "echo: x"
        assert server.last_request.headers["authorization"] == f"Bearer {KEY}"


def test_a_failing_command_stops_client_creation():
    with FakeLlmServer() as server:
        config = server.config(api_key="", api_key_command=python_command("import sys; sys.exit('locked')"))
        with pytest.raises(MissingApiKeyError, match="locked"):
            create_llm_client(config)
        assert server.request_count == 0


def test_nothing_to_resolve_returns_the_same_config():
    config = make_config(api_key="sk-plain-000000000000", api_key_command=None)
    assert resolve_api_keys(config) is config


# --- keyring --------------------------------------------------------------------------------------


@pytest.fixture
def memory_keyring():
    keyring = pytest.importorskip("keyring")
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self):
            super().__init__()
            self.entries = {}

        def get_password(self, service, username):
            return self.entries.get((service, username))

        def set_password(self, service, username, password):
            self.entries[(service, username)] = password

        def delete_password(self, service, username):
            del self.entries[(service, username)]

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_keyring_reference_is_read(memory_keyring):
    memory_keyring.set_password("openai", "me@example.com", "sk-from-keyring-000000")
    memory_keyring.set_password("https://host/v1", "bot", "sk-second-keyring-11111")
    config = make_config(api_key="keyring:openai/me@example.com", api_key_command=None,
                         extra_api_keys=("keyring:https://host/v1/bot",))
    assert resolve_api_keys(config).api_keys == ("sk-from-keyring-000000", "sk-second-keyring-11111")


def test_missing_keyring_entry_is_a_clear_error(memory_keyring):
    with pytest.raises(MissingApiKeyError, match=r"no entry for service 'openai', user 'me'.*keyring set"):
        read_keyring("keyring:openai/me")


def test_failing_keyring_backend_is_reported(memory_keyring, monkeypatch):
    from keyring.errors import KeyringLocked

    def locked(service, username):
        raise KeyringLocked("the collection is locked")

    monkeypatch.setattr(memory_keyring, "get_password", locked)
    with pytest.raises(MissingApiKeyError, match="KeyringLocked: the collection is locked"):
        read_keyring("keyring:openai/me")


def test_malformed_keyring_reference():
    with pytest.raises(MissingApiKeyError, match="SERVICE/USERNAME"):
        read_keyring("keyring:no-slash")


def test_keyring_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "keyring", None)  # import keyring -> ImportError
    with pytest.raises(MissingApiKeyError, match=r"pip install 'cowork-llm\[keyring\]'"):
        read_keyring("keyring:openai/me")


def test_an_unresolved_keyring_reference_is_never_sent():
    from cowork_llm.providers.openai import OpenAIClient

    config = make_config(api_key="keyring:openai/me", api_key_command=None)
    with pytest.raises(MissingApiKeyError, match="keyring reference"):
        OpenAIClient(config)
