"""`cowork-llm init`, `init --template`, and the exit codes every command shares."""

import argparse
import os
import pathlib
import re
import subprocess
import sys

import pytest

from cowork_llm import (
    AuthenticationError,
    ConfigError,
    LimiterAcquireError,
    LlmError,
    MissingApiKeyError,
    load_config,
)
from cowork_llm.cli import main
from cowork_llm.cli._common import run_command
from cowork_llm.cli.init import KEY_MEANINGS, render_template
from cowork_llm.config import CONFIG_KEYS

KEY = "sk-test-0123456789abcdef"
MINIMAL = f"""
[llm]
model.base_url = "https://api.openai.com/v1"
model.api_key = "{KEY}"
model.model_name = "gpt-4o"
"""
if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The configuration reference table lives in the README.
DOCS = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def write(text, name="config.toml"):
    path = pathlib.Path(name)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path.resolve())


def test_init_prints_every_field_with_its_source(capsys, monkeypatch):
    path = write(MINIMAL + '[llm.pricing."gpt-4o"]\ninput_per_million = 2.5\noutput_per_million = 10\n')
    monkeypatch.setenv("COWORK_LLM_RETRY_MAX_ATTEMPTS", "3")
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()}
    for key in CONFIG_KEYS:
        assert key.path in rows, key.path
    assert rows["model.model_name"].endswith(f"file:{path}")
    assert "'gpt-4o'" in rows["model.model_name"]
    assert re.search(r"\b3\s+env:COWORK_LLM_RETRY_MAX_ATTEMPTS$", rows["retry.max_attempts"])
    assert rows["rate_limit.max_concurrent"].endswith("default")
    assert "'sk-…cdef'" in rows["model.api_key"] and KEY not in out
    assert 'pricing."gpt-4o"' in rows
    assert out.rstrip().endswith("configuration is valid")


def test_init_reads_the_file_given_with_config(capsys):
    path = write(MINIMAL.replace("gpt-4o", "other-model"), "elsewhere.toml")
    assert main(["init", "--config", path]) == 0
    assert "'other-model'" in capsys.readouterr().out


def test_init_shows_a_key_rotation_masked(capsys):
    write(MINIMAL.replace(f'"{KEY}"', f'["{KEY}", "sk-second-key-99998888"]'))
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "model.extra_api_keys" in out and "'sk-…8888'" in out
    assert "sk-second-key-99998888" not in out


@pytest.mark.parametrize("text, fragment", [
    (MINIMAL + "model.temperature = 'hot'\n",
     "ConfigError: llm.model.temperature must be a number, got 'hot'"),
    (None, "ConfigNotFoundError: no LLM configuration found"),
    (MINIMAL.replace(f'model.api_key = "{KEY}"', ""), "MissingApiKeyError: llm.model.api_key is not set"),
])
def test_an_invalid_configuration_exits_2_with_one_line(text, fragment, capsys):
    if text is not None:
        write(text)
    assert main(["init"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert lines[0].startswith("cowork-llm: ") and fragment in lines[0]


def test_the_not_found_line_gives_both_ways_out(capsys):
    main(["init"])
    err = capsys.readouterr().err
    assert "cowork-llm init --template" in err and "COWORK_LLM_API_KEY" in err


def test_the_template_is_valid_toml_with_every_key_and_its_meaning(capsys):
    assert main(["init", "--template"]) == 0
    text = capsys.readouterr().out
    assert text == render_template()
    document = tomllib.loads(text)
    assert set(document["llm"]) == {"model", "rate_limit", "retry", "cache", "embeddings"}
    for key in CONFIG_KEYS:
        assert re.search(rf"^#? ?{key.name} =", text, re.M), key.path
        assert key.variable in text
    for meaning in KEY_MEANINGS.values():
        assert meaning.split()[0] in text
    assert "[[llm.fallback]]" in text and "[llm.pricing." in text


def test_the_template_loads_once_a_key_is_filled_in(monkeypatch, capsys):
    template = render_template()
    write(template)
    with pytest.raises(MissingApiKeyError):  # as printed, the key is still to be filled in
        load_config()
    write(template.replace('# api_key = "sk-..."', f'api_key = "{KEY}"'))
    config = load_config()
    assert config.model.api_key == KEY and config.model.base_url == "https://api.openai.com/v1"
    assert config.rate_limit == load_config().rate_limit  # every other key left at its default
    assert all(src == "default" for path, src in config.sources.items()
               if path not in ("model.base_url", "model.api_key", "model.model_name", "model.extra_api_keys"))
    write(template)
    monkeypatch.setenv("COWORK_LLM_API_KEY", KEY)
    assert main(["init"]) == 0


def test_the_template_documents_the_defaults_the_model_really_has():
    text = render_template()
    assert "# min_interval_seconds = 2.0" in text
    assert "# max_attempts = 5" in text
    assert '# backend = "memory"' in text
    assert "# allow_insecure_http = false" in text


def test_every_key_has_a_meaning_and_a_row_in_the_docs():
    assert set(KEY_MEANINGS) == {k.path for k in CONFIG_KEYS}
    docs = DOCS.read_text(encoding="utf-8")
    for key in CONFIG_KEYS:
        assert f"`{key.path}`" in docs, key.path
        assert f"`{key.variable}`" in docs, key.variable


def test_python_dash_m_runs_the_cli():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    result = subprocess.run([sys.executable, "-m", "cowork_llm", "init", "--template"], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_template()
    result = subprocess.run([sys.executable, "-m", "cowork_llm", "init"], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_cli_shows_library_warnings_on_stderr():
    write(MINIMAL + "model.modle_name = 'x'\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    result = subprocess.run([sys.executable, "-m", "cowork_llm", "init"], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "did you mean llm.model.model_name?" in result.stderr


# --- run_command: exit codes for every command ----------------------------------------------


def command(error):
    def func(args):
        raise error
    return argparse.Namespace(func=func)


@pytest.mark.parametrize("error, status", [
    (ConfigError("bad\nconfig"), 2),
    (MissingApiKeyError("no key"), 2),
    (AuthenticationError("wrong key", status_code=401), 1),
    (LimiterAcquireError("no slot in 5 s"), 1),
    (LlmError("something else"), 1),
    (KeyboardInterrupt(), 130),
])
def test_expected_errors_become_one_line_and_an_exit_status(error, status, capsys):
    assert run_command(command(error)) == status
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_one_line_carries_the_error_class_and_message(capsys):
    run_command(command(AuthenticationError("wrong key", status_code=401)))
    assert capsys.readouterr().err == "cowork-llm: AuthenticationError: wrong key (status 401)\n"


def test_a_traceback_only_with_debug_logging(monkeypatch, capsys):
    monkeypatch.setenv("COWORK_LOG_LEVEL", "debug")
    assert run_command(command(ConfigError("bad config"))) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("cowork-llm: ConfigError: bad config")


def test_a_bug_is_not_hidden():
    with pytest.raises(ZeroDivisionError):
        run_command(command(ZeroDivisionError("bug")))


def test_a_command_returning_none_or_a_status():
    assert run_command(argparse.Namespace(func=lambda args: None)) == 0
    assert run_command(argparse.Namespace(func=lambda args: 3)) == 3


@pytest.mark.parametrize("suffix", ["/chat/completions", "/messages", "/chat/completions/"])
def test_a_base_url_with_the_endpoint_path_is_refused_by_init_and_the_client(tmp_path, suffix):
    from cowork_llm import create_llm_client
    from cowork_llm.errors import InvalidBaseUrlError
    from cowork_llm.testing import FakeLlmServer

    with FakeLlmServer() as server:
        config = server.config(base_url=server.base_url + suffix)
        with pytest.raises(InvalidBaseUrlError, match="drop the suffix") as refused:
            create_llm_client(config)
        assert repr(server.base_url) in str(refused.value)  # says what to write instead
        assert server.request_count == 0
        (tmp_path / "c.toml").write_text(
            f'[llm.model]\nbase_url = "{server.base_url}{suffix}"\napi_key = "k"\nmodel_name = "m"\n')
        (tmp_path / "c.toml").chmod(0o600)
        done = subprocess.run([sys.executable, "-m", "cowork_llm", "init", "--config",
                               str(tmp_path / "c.toml")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout
    assert "drop the suffix" in done.stderr and len(done.stderr.strip().splitlines()) == 1
