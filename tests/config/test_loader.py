"""load_config(): which file, per-field precedence file → environment → default, sources,
and a clear error or warning for every way a configuration can be wrong."""

import logging
import os
import pathlib

import pytest

from cowork_llm import (
    ConfigError,
    ConfigNotFoundError,
    InvalidBaseUrlError,
    MissingApiKeyError,
    load_config,
)
from cowork_llm.config import CONFIG_KEYS

KEY = "sk-test-0123456789abcdef"
MINIMAL = f"""
[llm]
model.base_url = "https://api.openai.com/v1"
model.api_key = "{KEY}"
model.model_name = "gpt-4o"
"""


def write(text, name="config.toml", mode=0o600):
    path = pathlib.Path(name)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path.resolve())


@pytest.fixture
def env(monkeypatch):
    def set_many(**variables):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
    return set_many


@pytest.fixture
def required_env(env):
    env(COWORK_LLM_BASE_URL="https://example.com/v1", COWORK_LLM_API_KEY=KEY, COWORK_LLM_MODEL_NAME="m")


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- which file ---------------------------------------------------------------------------


def test_reads_config_toml_in_the_working_directory():
    path = write(MINIMAL + "model.temperature = 0.3\nmodel.max_tokens = 2048\n")
    config = load_config()
    m = config.model
    assert (m.model_name, m.temperature, m.max_tokens) == ("gpt-4o", 0.3, 2048)
    assert config.sources["model.api_key"] == f"file:{path}"


def test_cowork_config_names_the_file_and_the_argument_beats_it(env):
    env_file = write(MINIMAL.replace("gpt-4o", "from-env-file"), "a.toml")
    arg_file = write(MINIMAL.replace("gpt-4o", "from-argument"), "b.toml")
    write(MINIMAL.replace("gpt-4o", "from-cwd"))
    env(COWORK_CONFIG=env_file)
    assert load_config().model.model_name == "from-env-file"
    assert load_config(arg_file).model.model_name == "from-argument"
    assert load_config(pathlib.Path(arg_file)).sources["model.model_name"] == f"file:{arg_file}"


def test_a_relative_path_is_recorded_as_absolute():
    write(MINIMAL, "rel.toml")
    assert load_config("rel.toml").sources["model.base_url"] == f"file:{os.path.abspath('rel.toml')}"


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_an_explicitly_named_file_that_does_not_exist_is_an_error(how, env, required_env):
    missing = os.path.abspath("nowhere.toml")
    if how == "variable":
        env(COWORK_CONFIG="nowhere.toml")
    with pytest.raises(ConfigNotFoundError, match=f"{missing}.*does not exist"):
        load_config("nowhere.toml" if how == "argument" else None)


# --- layout -----------------------------------------------------------------------------------


def test_dotted_keys_and_tables_are_the_same_configuration():
    dotted = load_config(write(MINIMAL + "rate_limit.max_concurrent = 3\nretry.max_attempts = 2\n", "d.toml"))
    tables = load_config(write(f"""
[llm.model]
base_url = "https://api.openai.com/v1"
api_key = "{KEY}"
model_name = "gpt-4o"
[llm.rate_limit]
max_concurrent = 3
[llm.retry]
max_attempts = 2
""", "t.toml"))
    assert dotted == tables
    assert tables.rate_limit.max_concurrent == 3 and tables.retry.max_attempts == 2


def test_every_section_is_read_from_the_file():
    config = load_config(write(MINIMAL + """
[llm.rate_limit]
min_interval_seconds = 0.5
requests_per_minute = 60
backend = "sqlite"
path = "limits.db"
[llm.retry]
total_timeout_seconds = 10
[llm.cache]
backend = "memory"
ttl_seconds = 60
[llm.pricing."gpt-4o"]
input_per_million = 2.5
output_per_million = 10
[[llm.fallback]]
base_url = "https://api.anthropic.com/v1"
provider = "anthropic"
model_name = "claude-sonnet-4-5"
api_key = "sk-ant-0123456789abcdef"
"""))
    assert config.rate_limit.min_interval_seconds == 0.5
    assert config.rate_limit.requests_per_minute == 60
    assert (config.rate_limit.backend, config.rate_limit.path) == ("sqlite", "limits.db")
    assert config.retry.total_timeout_seconds == 10
    assert (config.cache.backend, config.cache.ttl_seconds) == ("memory", 60)
    assert config.pricing["gpt-4o"].output_per_million == 10
    assert [(m.provider, m.model_name) for m in config.fallback] == [("anthropic", "claude-sonnet-4-5")]
    assert config.sources["pricing"].startswith("file:") and config.sources["fallback"].startswith("file:")


def test_a_list_of_keys_is_the_primary_key_and_a_rotation():
    config = load_config(write(MINIMAL.replace(f'"{KEY}"', f'["{KEY}", "sk-second-000000000"]')))
    assert config.model.api_key == KEY
    assert config.model.extra_api_keys == ("sk-second-000000000",)


def test_a_comma_separated_key_variable_is_a_rotation(env):
    env(COWORK_LLM_BASE_URL="https://x.example/v1", COWORK_LLM_MODEL_NAME="m",
        COWORK_LLM_API_KEY=f"{KEY}, sk-second-000000000,")
    config = load_config()
    assert config.model.api_keys == (KEY, "sk-second-000000000")


def test_api_key_command_stands_in_for_the_key():
    path = write(MINIMAL.replace(f'model.api_key = "{KEY}"', 'model.api_key_command = "pass show x"'))
    config = load_config(path)
    assert (config.model.api_key, config.model.api_key_command) == ("", "pass show x")


# --- the environment and precedence ---------------------------------------------------------


def test_environment_only(env, required_env):
    env(COWORK_LLM_TEMPERATURE="0.7", COWORK_LLM_MAX_TOKENS="100", COWORK_LLM_PROVIDER="anthropic",
        COWORK_LLM_TIMEOUT_SECONDS="5", COWORK_LLM_ALLOW_INSECURE_HTTP="yes",
        COWORK_LLM_RATE_LIMIT_MIN_INTERVAL_SECONDS="0", COWORK_LLM_RATE_LIMIT_REQUESTS_PER_MINUTE="none",
        COWORK_LLM_RETRY_MAX_ATTEMPTS="3", COWORK_LLM_CACHE_BACKEND="memory",
        COWORK_LLM_CA_BUNDLE="/etc/ca.pem")
    config = load_config()
    m = config.model
    assert (m.base_url, m.api_key, m.model_name) == ("https://example.com/v1", KEY, "m")
    assert (m.temperature, m.max_tokens, m.provider, m.timeout_seconds) == (0.7, 100, "anthropic", 5.0)
    assert m.allow_insecure_http is True and m.ca_bundle == "/etc/ca.pem"
    assert config.rate_limit.min_interval_seconds == 0
    assert config.rate_limit.requests_per_minute is None
    assert config.retry.max_attempts == 3 and config.cache.backend == "memory"
    assert config.sources["retry.max_attempts"] == "env:COWORK_LLM_RETRY_MAX_ATTEMPTS"
    assert config.sources["rate_limit.requests_per_minute"] == "env:COWORK_LLM_RATE_LIMIT_REQUESTS_PER_MINUTE"


def test_every_field_has_a_variable_the_loader_reads(env, required_env):
    """Each COWORK_LLM_* name from CONFIG_KEYS really reaches its field."""
    samples = {bool: "true", int: "7", float: "1.5", str: "x"}
    special = {"model.provider": "anthropic", "rate_limit.backend": "sqlite", "cache.backend": "sqlite",
               "embeddings.base_url": "https://embeddings.example/v1", "embeddings.provider": "openai",
               "rate_limit.max_concurrent_scope": "shared",
               "model.top_p": "0.5", "model.reasoning_effort": "low", "model.max_tokens_field": "max_tokens",
               "model.max_response_bytes": "4096",
               "rate_limit.pace": "even"}
    for key in CONFIG_KEYS:
        if not key.required:
            kind = next(t for t in samples if t in getattr(key.annotation, "__args__", (key.annotation,)))
            env(**{key.variable: special.get(key.path, samples[kind])})
    config = load_config()
    for key in CONFIG_KEYS:
        assert config.sources[key.path] == f"env:{key.variable}", key.path
    assert (config.rate_limit.backend, config.rate_limit.path) == ("sqlite", "x")
    assert config.cache.ttl_seconds == 1.5
    assert (config.rate_limit.adaptive, config.rate_limit.pace) == (True, "even")


@pytest.mark.parametrize("variable, value, fragment", [
    ("COWORK_LLM_TEMPERATURE", "hot", "COWORK_LLM_TEMPERATURE must be a finite number, got 'hot'"),
    ("COWORK_LLM_TEMPERATURE", "nan", "COWORK_LLM_TEMPERATURE must be a finite number"),
    ("COWORK_LLM_MAX_TOKENS", "2.5", "COWORK_LLM_MAX_TOKENS must be an integer, got '2.5'"),
    ("COWORK_LLM_ALLOW_INSECURE_HTTP", "maybe", "COWORK_LLM_ALLOW_INSECURE_HTTP must be true or false"),
    ("COWORK_LLM_RATE_LIMIT_MAX_CONCURRENT", "two",
     "COWORK_LLM_RATE_LIMIT_MAX_CONCURRENT must be an integer"),
])
def test_a_variable_that_does_not_parse_is_named(variable, value, fragment, env, required_env):
    env(**{variable: value})
    with pytest.raises(ConfigError, match=fragment):
        load_config()


def test_an_invalid_value_from_a_variable_names_the_variable(env, required_env):
    env(COWORK_LLM_TEMPERATURE="5")
    with pytest.raises(ConfigError, match=r"between 0 and 2.*\(from COWORK_LLM_TEMPERATURE\)"):
        load_config()


def test_an_invalid_value_from_the_file_names_the_file():
    path = write(MINIMAL + "model.max_tokens = 0\n")
    with pytest.raises(ConfigError, match=f"max_tokens must be at least 1.*in {path}"):
        load_config()


def test_the_file_wins_per_field_and_the_environment_fills_the_gaps(env):
    path = write(MINIMAL + "rate_limit.max_concurrent = 4\n")
    env(COWORK_LLM_MODEL_NAME="ignored", COWORK_LLM_TEMPERATURE="0.9",
        COWORK_LLM_RATE_LIMIT_MAX_CONCURRENT="9", COWORK_LLM_RETRY_MAX_ATTEMPTS="2")
    config = load_config()
    assert config.model.model_name == "gpt-4o"
    assert config.model.temperature == 0.9
    assert config.rate_limit.max_concurrent == 4
    assert config.retry.max_attempts == 2
    assert config.sources["model.model_name"] == f"file:{path}"
    assert config.sources["model.temperature"] == "env:COWORK_LLM_TEMPERATURE"
    assert config.sources["retry.max_attempts"] == "env:COWORK_LLM_RETRY_MAX_ATTEMPTS"
    assert config.sources["retry.max_wait_seconds"] == "default"
    assert config.sources["pricing"] == "default" and config.sources["fallback"] == "default"


def test_an_empty_string_counts_as_unset(env):
    write(MINIMAL.replace(f'"{KEY}"', '""'))
    env(COWORK_LLM_API_KEY=KEY, COWORK_LLM_PROVIDER="")
    config = load_config()
    assert config.model.api_key == KEY
    assert config.sources["model.api_key"] == "env:COWORK_LLM_API_KEY"
    assert config.sources["model.provider"] == "default"


# --- missing pieces -------------------------------------------------------------------------


def test_nothing_at_all_gives_both_ways_out():
    with pytest.raises(ConfigNotFoundError) as info:
        load_config()
    message = str(info.value)
    assert "cowork-llm init --template" in message
    for variable in ("COWORK_LLM_BASE_URL", "COWORK_LLM_API_KEY", "COWORK_LLM_MODEL_NAME"):
        assert variable in message
    assert os.path.abspath("config.toml") in message


def test_a_missing_key_names_the_file_key_and_the_variable():
    path = write(MINIMAL.replace(f'model.api_key = "{KEY}"', ""))
    with pytest.raises(MissingApiKeyError) as info:
        load_config()
    assert "model.api_key" in str(info.value) and "COWORK_LLM_API_KEY" in str(info.value)
    assert path in str(info.value)


def test_a_missing_model_name_is_a_config_error_naming_both(env):
    env(COWORK_LLM_BASE_URL="https://example.com", COWORK_LLM_API_KEY=KEY)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert not isinstance(info.value, MissingApiKeyError)
    assert "model.model_name" in str(info.value) and "COWORK_LLM_MODEL_NAME" in str(info.value)


def test_a_file_without_an_llm_table_counts_as_absent(env, caplog):
    write("[tool.other]\nx = 1\n")
    with pytest.raises(ConfigNotFoundError, match="has no \\[llm\\] table"):
        load_config()
    env(COWORK_LLM_BASE_URL="https://example.com", COWORK_LLM_API_KEY=KEY, COWORK_LLM_MODEL_NAME="m")
    assert load_config().sources["model.base_url"] == "env:COWORK_LLM_BASE_URL"


# --- a broken file ------------------------------------------------------------------------


def test_invalid_toml_warns_with_line_and_column_then_uses_the_environment(caplog, required_env):
    path = write("[llm]\nmodel.base_url = \n")
    config = load_config()
    assert config.sources["model.base_url"] == "env:COWORK_LLM_BASE_URL"
    (warning,) = [w for w in warnings_of(caplog) if "not valid TOML" in w]
    assert path in warning and "line 2" in warning and "column" in warning


def test_invalid_toml_and_an_incomplete_environment_mentions_the_parse_error(env):
    write("[llm\n")
    with pytest.raises(ConfigNotFoundError, match=r"not valid TOML.*line 1"):
        load_config()
    env(COWORK_LLM_BASE_URL="https://example.com")
    with pytest.raises(MissingApiKeyError, match=r"COWORK_LLM_API_KEY.*ignored.*not valid TOML.*line 1"):
        load_config()


def test_a_file_that_is_not_utf8_is_treated_as_invalid_toml(required_env, caplog):
    pathlib.Path("config.toml").write_bytes(b"[llm]\nmodel.model_name = \"\xff\"\n")
    assert load_config().sources["model.model_name"] == "env:COWORK_LLM_MODEL_NAME"
    assert any("not valid TOML" in w for w in warnings_of(caplog))


@pytest.mark.parametrize("line, message", [
    ('model.temperature = "hot"', "llm.model.temperature must be a number, got 'hot'"),
    ("model.max_tokens = 2048.0", "llm.model.max_tokens must be an integer, got 2048.0"),
    ("model.timeout_seconds = nan", "llm.model.timeout_seconds must be a finite number"),
    ("rate_limit.max_concurrent = true", "llm.rate_limit.max_concurrent must be an integer, got True"),
    ('model.base_url = "api.openai.com/v1"', "no scheme: write 'https://api.openai.com/v1'"),
])
def test_a_wrong_value_in_a_valid_file_is_an_error_not_a_fallback(line, message, required_env):
    write(MINIMAL.replace('model.base_url = "https://api.openai.com/v1"', "") + line + "\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config()


def test_a_bad_base_url_is_an_invalid_base_url_error():
    write(MINIMAL.replace("https://api.openai.com/v1", "ftp://x"))
    with pytest.raises(InvalidBaseUrlError):
        load_config()


@pytest.mark.parametrize("text, message", [
    ('[llm]\nmodel = "gpt-4o"\n', "llm.model must be a table"),
    ("llm = 3\n", "llm in .* must be a table"),
    (MINIMAL + "model.api_key_list = 1\nfallback = 3\n", r"llm.fallback must be an array of tables"),
    (MINIMAL.replace(f'"{KEY}"', f'["{KEY}", 5]'), "llm.model.api_key must be a string or a list of strings"),
])
def test_misshapen_tables_are_errors(text, message):
    write(text)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_fallback_errors_are_prefixed_with_their_index():
    base = MINIMAL + ('[[llm.fallback]]\nbase_url = "https://a.example"\nmodel_name = "a"\n'
                      'api_key = "sk-a-0000000000"\n')
    write(base + '[[llm.fallback]]\nbase_url = "https://b.example"\nmodel_name = "b"\n'
          'api_key = "sk-b-0000000000"\ntemperature = "hot"\n')
    with pytest.raises(ConfigError, match=r"^llm.fallback\[1\].temperature must be a number, got 'hot'"):
        load_config()
    write(base + '[[llm.fallback]]\nbase_url = "https://b.example"\napi_key = "sk-b-0000000000"\n')
    with pytest.raises(ConfigError, match=r"llm.fallback\[1\].model_name is required"):
        load_config()
    write(base + '[[llm.fallback]]\nbase_url = "https://b.example"\nmodel_name = "b"\napi_key = "a b"\n')
    with pytest.raises(MissingApiKeyError) as info:
        load_config()
    assert str(info.value).startswith("llm.fallback[1].api_key") and "COWORK_LLM" not in str(info.value)


def test_pricing_errors_name_the_model():
    write(MINIMAL + '[llm.pricing."gpt-4o"]\ninput_per_million = 1\n')
    with pytest.raises(ConfigError, match=r'llm.pricing."gpt-4o".output_per_million is required'):
        load_config()
    write(MINIMAL + '[llm.pricing."gpt-4o"]\ninput_per_million = "a"\noutput_per_million = 1\n')
    with pytest.raises(ConfigError, match=r'llm.pricing."gpt-4o".input_per_million must be a number'):
        load_config()


def test_a_directory_is_not_a_config_file(required_env):
    os.mkdir("config.toml")
    with pytest.raises(ConfigError, match=f"cannot read config file {os.path.abspath('config.toml')}"):
        load_config()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_named():
    path = write(MINIMAL, mode=0o000)
    with pytest.raises(ConfigError, match=f"cannot read config file {path}: Permission denied"):
        load_config()


def test_an_unreadable_file_is_named_even_as_root(monkeypatch):
    path = write(MINIMAL)
    import builtins

    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if os.fspath(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(ConfigError, match=f"cannot read config file {path}: Permission denied"):
        load_config()


# --- warnings and the log -----------------------------------------------------------------------


def test_unknown_keys_warn_with_a_suggestion(caplog, env):
    path = write(MINIMAL + "model.modle_name = 'x'\nbase_url = 'y'\nretry.max_atempts = 3\nzzz = 1\n"
                 "[[llm.fallback]]\nbase_url = 'https://a.example'\nmodel_name = 'a'\n"
                 "api_key = 'sk-a-000000'\n"
                 "temprature = 1\n")
    env(COWORK_LLM_MODELNAME="x")
    load_config()
    warnings = warnings_of(caplog)
    expected = f"unknown key llm.model.modle_name in {path} is ignored; did you mean llm.model.model_name?"
    assert expected in warnings
    assert any("llm.base_url" in w and "did you mean llm.model.base_url?" in w for w in warnings)
    assert any("llm.retry.max_atempts" in w and "llm.retry.max_attempts?" in w for w in warnings)
    assert any("llm.fallback[0].temprature" in w and "llm.fallback[0].temperature?" in w for w in warnings)
    assert any("unknown key llm.zzz" in w and "did you mean" not in w for w in warnings)
    assert any("COWORK_LLM_MODELNAME" in w and "did you mean COWORK_LLM_MODEL_NAME?" in w for w in warnings)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_key_in_a_file_others_can_read_warns_like_ssh(caplog):
    path = write(MINIMAL, mode=0o644)
    load_config()
    (warning,) = [w for w in warnings_of(caplog) if "chmod" in w]
    assert path in warning and f"chmod 600 {path}" in warning and "0644" in warning


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_no_permission_warning_for_a_private_file_or_a_file_without_a_key(caplog, env):
    write(MINIMAL, mode=0o600)
    load_config()
    write(MINIMAL.replace(f'model.api_key = "{KEY}"', ""), mode=0o644)
    env(COWORK_LLM_API_KEY=KEY)
    load_config()
    assert not [w for w in warnings_of(caplog) if "chmod" in w]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_fallback_key_in_a_readable_file_also_warns(caplog, env):
    write(MINIMAL.replace(f'model.api_key = "{KEY}"', "") + "[[llm.fallback]]\nbase_url = 'https://a.example'\n"
          "model_name = 'a'\napi_key = 'sk-a-0000000000'\n", mode=0o640)
    env(COWORK_LLM_API_KEY=KEY)
    load_config()
    assert [w for w in warnings_of(caplog) if "chmod 600" in w]


def test_info_log_names_the_file_and_the_variables_used(caplog, env):
    caplog.set_level(logging.INFO, logger="cowork_llm")
    path = write(MINIMAL)
    env(COWORK_LLM_RETRY_MAX_ATTEMPTS="2", COWORK_LLM_MODEL_NAME="unused-because-the-file-wins")
    load_config()
    (info,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == f"configuration loaded: file {path}; variables COWORK_LLM_RETRY_MAX_ATTEMPTS"


# --- errors carry the setting, not just a sentence ----------------------------------------


def test_a_bad_value_from_a_variable_names_its_key_and_variable(env, required_env):
    env(COWORK_LLM_TEMPERATURE="7")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.key == "llm.model.temperature"
    assert caught.value.variable == "COWORK_LLM_TEMPERATURE"
    assert "COWORK_LLM_TEMPERATURE" in str(caught.value)


def test_a_bad_value_from_the_file_names_its_key_and_no_variable():
    write(MINIMAL + "rate_limit.max_concurrent = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert (caught.value.key, caught.value.variable) == ("llm.rate_limit.max_concurrent", None)


def test_a_bad_base_url_is_an_invalid_base_url_error_with_its_key(env):
    env(COWORK_LLM_BASE_URL="ftp://example.com", COWORK_LLM_API_KEY=KEY, COWORK_LLM_MODEL_NAME="m")
    with pytest.raises(InvalidBaseUrlError) as caught:
        load_config()
    assert (caught.value.key, caught.value.variable) == ("llm.model.base_url", "COWORK_LLM_BASE_URL")


def test_key_and_variable_survive_pickling(env, required_env):
    import pickle

    env(COWORK_LLM_MAX_TOKENS="0")
    with pytest.raises(ConfigError) as caught:
        load_config()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), str(copy), copy.key, copy.variable) == (
        type(caught.value), str(caught.value), "llm.model.max_tokens", "COWORK_LLM_MAX_TOKENS")


@pytest.mark.parametrize("named_by", ["argument", "COWORK_CONFIG"])
def test_an_explicitly_named_file_that_is_not_toml_is_an_error(required_env, monkeypatch, named_by):
    path = write("[llm\n", "named.toml")
    if named_by == "argument":
        load = lambda: load_config(path)  # noqa: E731
    else:
        monkeypatch.setenv("COWORK_CONFIG", path)
        load = load_config
    with pytest.raises(ConfigError, match=r"named.toml is not valid TOML.*line 1.*named by"):
        load()


def test_the_cli_exits_2_for_a_named_file_that_is_not_toml(required_env):
    import subprocess
    import sys

    write("[llm\n", "named.toml")
    done = subprocess.run([sys.executable, "-m", "cowork_llm", "init", "--config", "named.toml"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not valid TOML" in done.stderr and len(done.stderr.strip().splitlines()) == 1
