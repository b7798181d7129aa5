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
