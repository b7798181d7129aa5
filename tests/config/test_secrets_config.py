"""The API key never appears in a log record, repr, exception message or CLI output — on
the configuration paths (loading, validation, `cowork-llm init`), with logging at DEBUG."""

import logging
import os
import pathlib
import subprocess
import sys

import pytest

from cowork_llm import ConfigError, load_config
from cowork_llm.cli import main

SECRET = "sk-SECRETsecret0123456789abcdefXYZ"
SECOND = "sk-SECONDsecond9876543210zyxwvuABC"
FALLBACK = "sk-ant-FALLBACKfallback0123456789"
SECRETS = (SECRET, SECOND, FALLBACK, "SECRETsecret", "SECONDsecond", "FALLBACKfallback")

GOOD = f"""
[llm]
model.base_url = "https://api.openai.com/v1"
model.api_key = ["{SECRET}", "{SECOND}"]
model.model_name = "gpt-4o"
[[llm.fallback]]
base_url = "https://api.anthropic.com/v1"
provider = "anthropic"
model_name = "claude-sonnet-4-5"
api_key = "{FALLBACK}"
"""

# Files that fail in every way the loader can fail while a key is in play.
BROKEN = {
    "key with a space": GOOD.replace(SECRET, "sk-SECRETsecret 0123456789abcdef"),
    "key of the wrong type": GOOD.replace(f'["{SECRET}", "{SECOND}"]', f'[["{SECRET}"], 5]'),
    "bad base_url": GOOD.replace("https://api.openai.com/v1", "api.openai.com/v1"),
    "bad temperature": GOOD.replace('model.model_name = "gpt-4o"',
                                    'model.model_name = "gpt-4o"\nmodel.temperature = 9'),
    "bad fallback key": GOOD.replace(FALLBACK, f"{FALLBACK} x"),
    "fallback missing a field": GOOD.replace('model_name = "claude-sonnet-4-5"', ""),
    "misspelt key name": GOOD.replace("model.api_key", "model.api_kye"),
    "invalid TOML after the key": GOOD + "\n[llm\n",
}


def assert_no_secret(text):
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
def debug_logs(caplog, monkeypatch):
    monkeypatch.setenv("COWORK_LOG_LEVEL", "debug")
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    yield caplog
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        assert_no_secret(repr(record.args))
        assert_no_secret(logging.Formatter().format(record))


def write(text, mode=0o644):
    path = pathlib.Path("config.toml")
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def test_loading_a_good_file_never_shows_the_keys(debug_logs):
    write(GOOD)  # readable by others: the chmod warning must name the file, not the key
    config = load_config()
    assert config.model.api_key == SECRET  # the keys are really there...
    for text in (repr(config), str(config), repr(config.model), str(config.fallback), repr(config.sources)):
        assert_no_secret(text)  # ...and never shown
    assert any("chmod 600" in r.getMessage() for r in debug_logs.records)
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records)


def test_keys_from_the_environment_are_never_shown(debug_logs, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_API_KEY", f"{SECRET},{SECOND}")
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.openai.com/v1")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    monkeypatch.setenv("COWORK_LLM_APIKEY", SECRET)  # an unknown variable holding a key
    config = load_config()
    assert config.model.api_keys == (SECRET, SECOND)
    assert_no_secret(repr(config))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_errors_never_show_the_keys(case, debug_logs, monkeypatch):
    write(BROKEN[case])
    if case == "invalid TOML after the key":
        monkeypatch.setenv("COWORK_LLM_API_KEY", f"{SECRET} with space")
        monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://api.openai.com/v1")
        monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    try:
        load_config()
    except ConfigError as error:
        assert_no_secret(str(error))
        assert_no_secret(repr(error))
    else:
        pytest.fail(f"{case}: expected a ConfigError")


@pytest.mark.parametrize("case", [None, *sorted(BROKEN)])
def test_cli_output_never_shows_the_keys(case, debug_logs, capsys):
    write(GOOD if case is None else BROKEN[case])
    status = main(["init"])
    assert status == (0 if case is None else 2)
    captured = capsys.readouterr()
    assert_no_secret(captured.out)
    assert_no_secret(captured.err)  # with COWORK_LOG_LEVEL=debug: the traceback too


def test_the_cli_in_a_real_process_at_debug_never_shows_the_keys():
    write(GOOD)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    environ["COWORK_LOG_LEVEL"] = "debug"
    result = subprocess.run([sys.executable, "-m", "cowork_llm", "init"], env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "DEBUG" in result.stderr and "'sk-…fXYZ'" in result.stdout
    assert_no_secret(result.stdout + result.stderr)


def test_a_redis_password_is_masked_in_reprs_and_init_output(capsys):
    from cowork_llm.cli import main
    from cowork_llm.config import RateLimitConfig

    url = "redis://user:hunter2-redis-secret@127.0.0.1:6390/0"
    shown = repr(RateLimitConfig(backend="redis", redis_url=url))
    assert "hunter2-redis-secret" not in shown and "redis://user:***@127.0.0.1:6390/0" in shown
    with open("config.toml", "w", encoding="utf-8") as f:
        f.write('[llm]\nmodel.base_url = "https://api.example.com/v1"\n'
                'model.api_key = "sk-test-0123456789abcdef"\nmodel.model_name = "m"\n'
                f'rate_limit.backend = "redis"\nrate_limit.redis_url = "{url}"\n')
    os.chmod("config.toml", 0o600)
    assert main(["init"]) == 0
    out, err = capsys.readouterr()
    assert "hunter2-redis-secret" not in out + err
    assert "user:***@127.0.0.1:6390" in out


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6390/0?password=hunter3-query-secret",
    "redis://hunter3-query-secret@127.0.0.1:6390/0",
    "rediss://user:hunter3-query-secret@127.0.0.1:6390/0?db=1",
])
def test_every_redis_credential_form_is_masked_in_reprs_and_init_output(capsys, url):
    from cowork_llm.cli import main
    from cowork_llm.config import RateLimitConfig

    assert "hunter3-query-secret" not in repr(RateLimitConfig(backend="redis", redis_url=url))
    with open("config.toml", "w", encoding="utf-8") as f:
        f.write('[llm]\nmodel.base_url = "https://api.example.com/v1"\n'
                'model.api_key = "sk-test-0123456789abcdef"\nmodel.model_name = "m"\n'
                f'rate_limit.backend = "redis"\nrate_limit.redis_url = "{url}"\n')
    os.chmod("config.toml", 0o600)
    assert main(["init"]) == 0
    out, err = capsys.readouterr()
    assert "hunter3-query-secret" not in out + err and "***" in out
