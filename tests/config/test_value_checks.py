"""Single-value rules of the configuration, tested where they belong (before, only the
reliability suite caught their absence): base_url may not carry credentials, a query or
a fragment, and no wait or timeout may exceed a year."""

import pytest

from cowork_llm import (
    ConfigError,
    InvalidBaseUrlError,
    ModelConfig,
    RateLimitConfig,
    RetryConfig,
)
from cowork_llm.config import load_config

KEY = "sk-test-0123456789abcdef"
YEAR = 365 * 24 * 3600


def model(**overrides):
    values = dict(base_url="https://api.openai.com/v1", api_key=KEY, model_name="gpt-4o-mini")
    values.update(overrides)
    return ModelConfig(**values)


# --- base_url ------------------------------------------------------------------------------


@pytest.mark.parametrize("url, secret", [
    ("https://user:hunter2-secret@api.example.com/v1", "hunter2-secret"),
    ("https://sk-in-the-user-part@api.example.com/v1", "sk-in-the-user-part"),
    ("https://api.example.com/v1?api_key=sk-query-secret", "sk-query-secret"),
    ("https://api.example.com/v1#sk-fragment-secret", "sk-fragment-secret"),
])
def test_base_url_with_credentials_a_query_or_a_fragment_is_refused(url, secret):
    with pytest.raises(InvalidBaseUrlError) as raised:
        model(base_url=url)
    text = str(raised.value)
    assert "llm.model.base_url must not contain user:password@, a ?query or a #fragment" in text
    assert "put the key in api_key" in text
    # What is shown is the URL with them removed, never what followed "@", "?" or "#".
    assert "'https://api.example.com/v1' with them removed" in text
    assert secret not in text and secret not in repr(raised.value)


def test_a_query_is_refused_even_when_the_url_is_otherwise_invalid():
    # The refusal comes first, so an error about the rest never shows the query.
    with pytest.raises(InvalidBaseUrlError) as raised:
        model(base_url="ftp://host/?token=sk-query-secret")
    assert "sk-query-secret" not in str(raised.value)
    assert "must not contain" in str(raised.value)


@pytest.mark.parametrize("url", ["https://api.example.com/v1", "http://[::1]:8080/v1",
                                 "https://api.example.com:8443/openai/v1/"])
def test_plain_base_urls_are_accepted(url):
    assert model(base_url=url).base_url == url


def test_a_credential_in_base_url_from_a_file_names_the_file_key(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[llm.model]\nbase_url = "https://me:sk-file-secret@api.example.com/v1"\n'
                    f'api_key = "{KEY}"\nmodel_name = "m"\n')
    with pytest.raises(InvalidBaseUrlError) as raised:
        load_config(path)
    assert "base_url" in str(raised.value) and "sk-file-secret" not in str(raised.value)


# --- the one-year cap ----------------------------------------------------------------------


DURATIONS = [
    (ModelConfig, "timeout_seconds", "llm.model"),
    (RateLimitConfig, "min_interval_seconds", "llm.rate_limit"),
    (RateLimitConfig, "acquire_timeout_seconds", "llm.rate_limit"),
    (RetryConfig, "initial_wait_seconds", "llm.retry"),
    (RetryConfig, "max_wait_seconds", "llm.retry"),
    (RetryConfig, "max_retry_after_seconds", "llm.retry"),
    (RetryConfig, "total_timeout_seconds", "llm.retry"),
]


def _make(cls, **values):
    return model(**values) if cls is ModelConfig else cls(**values)


@pytest.mark.parametrize("cls, name, section", DURATIONS)
def test_a_duration_of_exactly_a_year_is_accepted(cls, name, section):
    assert getattr(_make(cls, **{name: YEAR}), name) == YEAR


@pytest.mark.parametrize("cls, name, section", DURATIONS)
def test_a_duration_over_a_year_is_refused_naming_the_key(cls, name, section):
    with pytest.raises(ConfigError) as raised:
        _make(cls, **{name: YEAR + 1})
    assert str(raised.value) == f"{section}.{name} must be at most {YEAR} (a year), got {YEAR + 1}"


def test_a_missing_acquire_timeout_means_no_limit_and_passes_the_cap():
    assert RateLimitConfig(acquire_timeout_seconds=None).acquire_timeout_seconds is None


# --- every rule, word for word, with the key it names (found by mutation testing) -------------


def _embeddings(**values):
    from cowork_llm.config import EmbeddingsConfig

    return EmbeddingsConfig(**values)


RULES = [
    (model, {"timeout_seconds": float("inf")}, "llm.model.timeout_seconds",
     "llm.model.timeout_seconds must be a finite number, got inf"),
    (model, {"base_url": "https://api.example.com/v 1"}, "llm.model.base_url",
     "llm.model.base_url must not contain spaces, got 'https://api.example.com/v 1'"),
    (model, {"base_url": "ftp://x"}, "llm.model.base_url",
     "llm.model.base_url must be an http(s) URL with a host, e.g. 'https://api.openai.com/v1', "
     "got 'ftp://x'"),
    (model, {"temperature": 2.01}, "llm.model.temperature",
     "llm.model.temperature must be between 0 and 2, got 2.01"),
    (_embeddings, {"model_name": " "}, "llm.embeddings.model_name",
     "llm.embeddings.model_name must not be empty (leave it out to have no embeddings model), "
     "got ' '"),
    (_embeddings, {"provider": "azure"}, "llm.embeddings.provider",
     "llm.embeddings.provider must be one of openai, anthropic, got 'azure'"),
    (_embeddings, {"batch_size": 0}, "llm.embeddings.batch_size",
     "llm.embeddings.batch_size must be from 1 to 2048 (OpenAI's most inputs per request), got 0"),
    (_embeddings, {"batch_size": 2049}, "llm.embeddings.batch_size",
     "llm.embeddings.batch_size must be from 1 to 2048 (OpenAI's most inputs per request), got 2049"),
    (RateLimitConfig, {"max_concurrent_scope": "shared"}, "llm.rate_limit.max_concurrent_scope",
     "llm.rate_limit.max_concurrent_scope 'shared' needs a shared backend: set backend = 'sqlite' "
     "or 'redis' (memory is one process), got 'shared'"),
    (RateLimitConfig, {"requests_per_minute": 0}, "llm.rate_limit.requests_per_minute",
     "llm.rate_limit.requests_per_minute must be at least 1, got 0"),
]


@pytest.mark.parametrize("make, values, key, message", RULES,
                         ids=[f"{k}={list(v.values())[0]!r}" for _, v, k, _ in RULES])
def test_each_rule_says_what_is_wrong_and_carries_its_key(make, values, key, message):
    with pytest.raises(ConfigError) as raised:
        make(**values)
    assert str(raised.value) == message and raised.value.key == key


@pytest.mark.parametrize("cls, name, section", DURATIONS)
def test_the_year_cap_error_carries_its_key(cls, name, section):
    with pytest.raises(ConfigError) as raised:
        _make(cls, **{name: YEAR + 1})
    assert raised.value.key == f"{section}.{name}"


def test_a_key_with_an_invisible_character_says_which_and_what_to_do():
    with pytest.raises(ConfigError) as raised:
        model(api_key="sk-abc\u200bdefghijkl")
    assert str(raised.value) == (
        "llm.model.api_key holds a character that is not printable ASCII (U+200B, character 7): "
        "probably copied along with the key; type or copy the key again")


def test_the_edges_of_each_range_are_accepted():
    from cowork_llm import CacheConfig

    assert model(temperature=2).temperature == 2 and model(temperature=0).temperature == 0
    assert RateLimitConfig(requests_per_minute=1).requests_per_minute == 1
    assert CacheConfig(max_entries=1).max_entries == 1
    assert _embeddings(batch_size=1).batch_size == 1
    assert _embeddings(batch_size=2048).batch_size == 2048


def test_the_secrets_of_a_redis_url_are_found_longest_first_and_decoded():
    from cowork_llm.config._checks import url_secrets

    assert url_secrets("redis://u:p%40ss@h/0?password=a-longer-one&db=1") == [
        "a-longer-one", "p%40ss", "p@ss"]
    assert url_secrets("redis://only-a-token@h/0") == ["only-a-token"]
    assert url_secrets("redis://h/0?db=1&PassWord=x") == ["x"]
    assert url_secrets("redis://h:6379/0") == []
