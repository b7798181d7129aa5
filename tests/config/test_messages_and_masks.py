"""What a user reads when a configuration is incomplete or shown: the exact wording of
the missing-value errors, masked keys and URL passwords, the permission warning, and
how variables are read (found by mutation testing, see TESTING.md)."""

import logging
import os
import pathlib

import pytest

from cowork_llm import (
    ConfigError,
    ConfigNotFoundError,
    MissingApiKeyError,
    ModelConfig,
    ModelPrice,
    RetryConfig,
    load_config,
)
from cowork_llm.config import mask_secret, mask_url_password

KEY = "sk-test-0123456789abcdef"
MINIMAL = f"""
[llm]
model.base_url = "https://api.openai.com/v1"
model.api_key = "{KEY}"
model.model_name = "gpt-4o"
"""
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def write(text, mode=0o600):
    path = pathlib.Path("config.toml")
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path.resolve())


def chmod_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "chmod" in r.getMessage()]


# --- missing values ------------------------------------------------------------------------


def test_nothing_configured_says_exactly_what_to_do():
    with pytest.raises(ConfigNotFoundError) as raised:
        load_config()
    path = os.path.abspath("config.toml")
    assert str(raised.value) == (
        f"no LLM configuration found (no config file at {path}; no COWORK_LLM_* variable is "
        f"set). Either write one with `cowork-llm init --template > config.toml` and fill in "
        "api_key under [llm.model], or set COWORK_LLM_BASE_URL, COWORK_LLM_API_KEY, "
        "COWORK_LLM_MODEL_NAME (another file can be named with --config or COWORK_CONFIG)")


def test_one_missing_value_is_named_with_both_spellings_and_its_variable():
    path = write(MINIMAL.replace(f'model.api_key = "{KEY}"', ""))
    with pytest.raises(MissingApiKeyError) as raised:
        load_config()
    assert str(raised.value) == (
        "llm.model.api_key is not set: add api_key under [llm.model] (or model.api_key under "
        f"[llm]) in {path}, or set COWORK_LLM_API_KEY")


def test_several_missing_values_are_listed_together(monkeypatch):
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "https://example.com/v1")
    with pytest.raises(MissingApiKeyError) as raised:
        load_config()
    path = os.path.abspath("config.toml")
    assert str(raised.value) == (
        "llm.model.api_key, llm.model.model_name are not set: "
        f"add api_key under [llm.model] (or model.api_key under [llm]) in {path}, "
        "or set COWORK_LLM_API_KEY; "
        f"add model_name under [llm.model] (or model.model_name under [llm]) in {path}, "
        "or set COWORK_LLM_MODEL_NAME")


# --- variables -----------------------------------------------------------------------------


@pytest.fixture
def required_env(monkeypatch):
    monkeypatch.setenv("COWORK_LLM_BASE_URL", "http://10.0.0.5/v1")
    monkeypatch.setenv("COWORK_LLM_MODEL_NAME", "m")
    monkeypatch.setenv("COWORK_LLM_API_KEY", KEY)


@pytest.mark.parametrize("word", ["false", "0", "no", "off", "FALSE", "Off"])
def test_a_false_word_turns_a_switch_off(word, required_env, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_ALLOW_INSECURE_HTTP", word)
    assert load_config().model.allow_insecure_http is False


@pytest.mark.parametrize("word", ["true", "1", "yes", "on", "TRUE", "Yes"])
def test_a_true_word_turns_a_switch_on(word, required_env, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_ALLOW_INSECURE_HTTP", word)
    assert load_config().model.allow_insecure_http is True


def test_a_word_that_is_neither_names_the_variable(required_env, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_ALLOW_INSECURE_HTTP", "nope")
    with pytest.raises(ConfigError, match="COWORK_LLM_ALLOW_INSECURE_HTTP must be true or false"):
        load_config()


@pytest.mark.parametrize("raw", [KEY, f" {KEY} ", f"{KEY},", f",{KEY}"])
def test_one_key_in_the_variable_is_that_key_without_separators(raw, required_env, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_API_KEY", raw)
    config = load_config()
    assert config.model.api_key == KEY and config.model.extra_api_keys == ()


# --- masking -------------------------------------------------------------------------------


def test_a_key_is_shown_by_its_ends_only_from_twelve_characters():
    assert mask_secret("sk-12345678") == "'…'"  # 11 characters: nothing of it
    assert mask_secret("sk-123456789") == "'sk-…6789'"  # 12
    assert mask_secret("") == "''" and mask_secret(None) == "''"


@pytest.mark.parametrize("url, shown", [
    ("redis://:hunter2@localhost:6379/0", "redis://:***@localhost:6379/0"),
    ("redis://app:hunter2@cache.internal/2", "redis://app:***@cache.internal/2"),
    ("redis://app:hunter2@[::1]:6380/0", "redis://app:***@[::1]:6380/0"),
    ("rediss://:hunter2@/0", "rediss://:***@/0"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
])
def test_a_url_password_is_masked_and_the_rest_kept(url, shown):
    assert mask_url_password(url) == shown


def test_the_repr_of_a_config_masks_every_key_and_lists_the_fields():
    config = ModelConfig(base_url="https://a.example/v1", api_key="sk-first-key-0001",
                         extra_api_keys=("sk-second-key-0002", "sk-third-key-0003"),
                         model_name="m")
    text = repr(config)
    assert text.startswith("ModelConfig(base_url='https://a.example/v1', api_key='sk-…0001', ")
    assert "extra_api_keys=('sk-…0002', 'sk-…0003')" in text
    assert repr(RetryConfig()).startswith("RetryConfig(max_attempts=5, initial_wait_seconds=1.0, ")


# --- prices --------------------------------------------------------------------------------


@pytest.mark.parametrize("prices", [(0, 0), (0.15, 0.6), (0.5, 0)])
def test_free_and_cheap_models_have_valid_prices(prices):
    price = ModelPrice(input_per_million=prices[0], output_per_million=prices[1])
    assert (price.input_per_million, price.output_per_million) == prices


@pytest.mark.parametrize("field", ["input_per_million", "output_per_million"])
def test_a_negative_price_is_refused_naming_the_field(field):
    values = {"input_per_million": 1.0, "output_per_million": 1.0, field: -0.01}
    with pytest.raises(ConfigError) as raised:
        ModelPrice(**values)
    assert str(raised.value) == f"llm.pricing.{field} must be 0 or more, got -0.01"


# --- the permission warning ----------------------------------------------------------------


@posix_only
def test_the_permission_warning_says_what_to_run(caplog):
    path = write(MINIMAL, mode=0o644)
    load_config()
    assert chmod_warnings(caplog) == [
        f"config file {path} holds an API key and is readable by group or others "
        f"(permissions 0644); run: chmod 600 {path}"]


@posix_only
@pytest.mark.parametrize("mode, warns", [(0o600, False), (0o700, False), (0o711, False),
                                         (0o640, True), (0o604, True)])
def test_only_a_file_others_can_read_is_warned_about(mode, warns, caplog):
    write(MINIMAL, mode=mode)
    load_config()
    assert bool(chmod_warnings(caplog)) is warns


@posix_only
@pytest.mark.parametrize("key_line", ['api_key = "keyring:openai/me"',
                                      'api_key_command = "pass show openai"'])
def test_a_file_without_a_literal_key_is_not_warned_about(key_line, caplog):
    write(MINIMAL.replace(f'model.api_key = "{KEY}"', "")
          + f"[[llm.fallback]]\nbase_url = 'https://a.example/v1'\nmodel_name = 'a'\n{key_line}\n",
          mode=0o644)
    os.environ["COWORK_LLM_API_KEY"] = KEY  # the primary key comes from the environment
    try:
        load_config()
    finally:
        del os.environ["COWORK_LLM_API_KEY"]
    assert chmod_warnings(caplog) == []


# --- request defaults, the stop variable, sources, logs (found by mutation testing) ---------


@pytest.mark.parametrize("values, message", [
    ({"reasoning_effort": "extreme"}, "llm.model.reasoning_effort must be one of none, minimal, "
                                      "low, medium, high, xhigh, max, got 'extreme'"),
    ({"stop": ["a"] * 5}, "llm.model.stop takes at most 4 sequences (OpenAI's limit), got 5"),
])
def test_each_request_default_is_checked_even_when_the_first_is_unset(values, message):
    with pytest.raises(ConfigError) as raised:  # top_p, checked first, is not set
        ModelConfig(base_url="https://a.example/v1", api_key=KEY, model_name="m", **values)
    assert str(raised.value) == message


@pytest.mark.parametrize("raw, stop", [('["\\n\\n", "END"]', ("\n\n", "END")), ("END", ("END",)),
                                       ("[not json", None)])
def test_the_stop_variable_is_one_sequence_or_a_json_list(raw, stop, required_env, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_STOP", raw)
    if stop is None:
        with pytest.raises(ConfigError) as raised:
            load_config()
        assert str(raised.value).startswith(
            "COWORK_LLM_STOP must be one stop sequence or a JSON list of them")
    else:
        assert load_config().model.stop == stop


def test_extra_keys_from_a_variable_say_where_they_came_from(required_env, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_API_KEY", f"{KEY},sk-second-000000000000")
    config = load_config()
    assert config.sources["model.extra_api_keys"] == "env:COWORK_LLM_API_KEY"


def test_the_resolved_configuration_is_logged_at_debug_with_keys_masked(required_env, caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    load_config()
    (line,) = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith("resolved configuration ")]
    assert line.startswith("resolved configuration LlmConfig(") and KEY not in line
    assert "(sources {" in line


def test_a_file_without_an_llm_table_is_named_in_the_log(required_env, caplog):
    caplog.set_level(logging.INFO, logger="cowork_llm")
    path = write("[other]\nx = 1\n")
    load_config()
    assert f"config file {path} has no [llm] table; ignoring it" in caplog.text


def test_a_pricing_entry_that_is_not_a_table_names_the_file():
    path = write(MINIMAL + "pricing = 3\n")
    with pytest.raises(ConfigError) as raised:
        load_config()
    assert path in str(raised.value) and "pricing" in str(raised.value)


@posix_only
def test_a_config_fifo_nobody_writes_to_fails_within_the_pipe_wait(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr("cowork_llm.config._file.PIPE_WAIT_SECONDS", 0.3)
    path = tmp_path / "config.toml"
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not deliver a whole file within 0.3 s"):
        load_config(path)
    assert time.monotonic() - started < 3.0
