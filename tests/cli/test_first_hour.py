"""What a newcomer meets in the first hour: help texts that read well, `init` agreeing
with the other commands, error messages that say where to set a value, a readable usage
line, and a warning given once."""

import argparse
import re
import warnings

import pytest

from cowork_llm import (
    CacheConfig,
    ConfigError,
    ConfigNotFoundError,
    RateLimitConfig,
    _logging,
    load_config,
)
from cowork_llm.cli import _COMMANDS, build_parser, main
from cowork_llm.results import Usage
from cowork_llm.usage import UsageTracker, format_usage

REMOTE = {"COWORK_LLM_API_KEY": "sk-test-0123456789abcdef", "COWORK_LLM_MODEL_NAME": "gpt-4o"}


def _help_text(command, monkeypatch, capsys, columns=80):
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ("",) + _COMMANDS)
def test_every_help_text_is_prose_wrapped_to_the_terminal(command, monkeypatch, capsys):
    text = _help_text(command, monkeypatch, capsys)
    assert "``" not in text, "a raw docstring leaked into --help"
    assert ":func:" not in text and ":class:" not in text
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long


@pytest.mark.parametrize("command", _COMMANDS)
def test_every_subcommand_has_a_description_and_the_config_option(command, monkeypatch, capsys):
    text = _help_text(command, monkeypatch, capsys)
    usage, description = text.split("\n\n")[:2]
    assert description[0].isupper() and description.rstrip().endswith(".")
    assert "--config PATH" in text


def test_help_examples_keep_their_own_lines(monkeypatch, capsys):
    text = _help_text("ask", monkeypatch, capsys, columns=40)
    assert '\n  git diff | cowork-llm ask --system "Review this diff briefly" -\n' in text


def test_subparsers_use_the_wrapping_formatter():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in sub.choices.items():
        assert subparser.formatter_class.__name__ == "HelpFormatter", name


def test_init_refuses_plain_http_to_a_remote_host_like_every_other_command(monkeypatch, capsys):
    for name, value in REMOTE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "http://llm.example.com/v1")
    assert main(["init"]) == 2
    captured = capsys.readouterr()
    assert "configuration is valid" not in captured.out
    assert "plain http" in captured.err and "allow_insecure_http" in captured.err
    monkeypatch.setenv("COWORK_LLM_ALLOW_INSECURE_HTTP", "true")
    assert main(["init"]) == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_init_accepts_plain_http_to_loopback(monkeypatch, capsys):
    for name, value in REMOTE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "http://127.0.0.1:8080/v1")
    assert main(["init"]) == 0


def test_init_names_a_missing_ca_bundle(monkeypatch, capsys, tmp_path):
    for name, value in REMOTE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://llm.example.com/v1")
    monkeypatch.setenv("COWORK_LLM_CA_BUNDLE", str(tmp_path / "missing.pem"))
    assert main(["init"]) == 2
    assert "llm.model.ca_bundle" in capsys.readouterr().err


def test_init_checks_fallback_transport_by_position(tmp_path, capsys):
    (tmp_path / "config.toml").write_text(
        '[llm]\nmodel.base_url = "https://a.example/v1"\nmodel.api_key_command = "true"\n'
        'model.model_name = "m"\n[[llm.fallback]]\nbase_url = "http://b.example/v1"\n'
        'api_key_command = "true"\nmodel_name = "n"\n')
    assert main(["init"]) == 2
    assert "llm.fallback[0].base_url" in capsys.readouterr().err


def test_a_missing_config_file_names_the_option_that_named_it(tmp_path):
    with pytest.raises(ConfigNotFoundError, match=r"named by --config"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("build, variable", [
    (lambda: RateLimitConfig(backend="sqlite"), "COWORK_LLM_RATE_LIMIT_PATH"),
    (lambda: RateLimitConfig(backend="redis"), "COWORK_LLM_RATE_LIMIT_REDIS_URL"),
    (lambda: CacheConfig(backend="sqlite"), "COWORK_LLM_CACHE_PATH"),
])
def test_a_backend_without_its_location_says_where_to_set_it(build, variable):
    with pytest.raises(ConfigError, match=variable):
        build()


def test_printing_a_usage_snapshot_gives_the_one_line_summary():
    tracker = UsageTracker()
    usage = Usage(prompt_tokens=1200, completion_tokens=340, total_tokens=1540)
    tracker.record_success("m", usage, latency=0.1)
    snapshot = tracker.snapshot()
    assert str(snapshot) == format_usage(snapshot)
    assert str(snapshot).startswith("usage: 1 request (0 cached, 0 failed, 0 retries), 1,200 prompt")
    assert repr(snapshot).startswith("UsageSnapshot(")  # the full repr stays for debugging


def test_an_invalid_log_level_is_warned_about_once(monkeypatch):
    monkeypatch.setattr(_logging, "_warned_values", set())
    monkeypatch.setenv("COWORK_LOG_LEVEL", "chatty")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _logging.configure_logging_from_env() is None
        assert _logging.configure_logging_from_env() is None  # as the CLI does after import
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and re.search(r"COWORK_LOG_LEVEL='chatty'", messages[0])
    monkeypatch.setenv("COWORK_LOG_LEVEL", "louder")
    with pytest.warns(RuntimeWarning, match="louder"):  # another bad value is news
        _logging.configure_logging_from_env()


def test_the_documented_fallback_with_only_api_key_command_loads_and_answers(tmp_path):
    # docs/configuration.md's [[llm.fallback]] example has api_key_command and no api_key.
    import sys

    from cowork_llm import create_llm_client
    from cowork_llm.testing import FakeLlmServer

    with FakeLlmServer(api_key="sk-primary-000") as primary, \
            FakeLlmServer(api_key="sk-fallback-111") as fallback:
        primary.fail_next(status=401)
        script = tmp_path / "key.py"
        script.write_text("print('sk-fallback-111')\n")
        command = f"{sys.executable} {script}"
        (tmp_path / "config.toml").write_text(
            f'[llm]\nmodel.base_url = "{primary.base_url}"\nmodel.api_key = "sk-primary-000"\n'
            'model.model_name = "fake-model"\n[llm.rate_limit]\nmin_interval_seconds = 0\n'
            f'[[llm.fallback]]\nbase_url = "{fallback.base_url}"\nmodel_name = "fake-model"\n'
            f'api_key_command = "{command}"\n')
        config = load_config()
        assert config.fallback[0].api_key_command == command
        with create_llm_client(config) as llm:
            assert llm.generate_content("hi") == "echo: hi"
        assert fallback.request_count == 1
        assert fallback.last_request.headers["authorization"] == "Bearer sk-fallback-111"


def test_a_template_without_its_key_says_where_the_template_wants_it(capsys):
    from pathlib import Path

    assert main(["init", "--template"]) == 0
    Path("config.toml").write_text(capsys.readouterr().out)
    assert main(["init"]) == 2
    err = capsys.readouterr().err
    assert "add api_key under [llm.model]" in err and "COWORK_LLM_API_KEY" in err
