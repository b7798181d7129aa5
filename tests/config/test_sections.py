"""The configuration model: validation in __post_init__, masked repr, immutability."""

import dataclasses

import pytest

from cowork_llm import (
    CacheConfig,
    ConfigError,
    InvalidBaseUrlError,
    LlmConfig,
    MissingApiKeyError,
    ModelConfig,
    ModelPrice,
    RateLimitConfig,
    RetryConfig,
)
from cowork_llm.config import mask_secret

KEY = "sk-test-0123456789abcdef"


def model(**overrides):
    values = dict(base_url="https://api.openai.com/v1", api_key=KEY, model_name="gpt-4o-mini")
    values.update(overrides)
    return ModelConfig(**values)


def test_a_valid_model_keeps_its_values_and_defaults():
    m = model(temperature=0.3, max_tokens=2048)
    assert (m.temperature, m.max_tokens, m.provider, m.timeout_seconds) == (0.3, 2048, "openai", 60.0)
    assert m.allow_insecure_http is False
    assert m.host == "api.openai.com"
    assert m.api_keys == (KEY,)


def test_base_url_without_scheme_says_the_scheme_is_missing():
    with pytest.raises(InvalidBaseUrlError, match=r"no scheme: write 'https://api.openai.com/v1'"):
        model(base_url="api.openai.com/v1")


@pytest.mark.parametrize("url", ["ftp://example.com", "https://", "not a url", ""])
def test_base_url_must_be_http_with_a_host(url):
    with pytest.raises(InvalidBaseUrlError, match="llm.model.base_url"):
        model(base_url=url)


@pytest.mark.parametrize("key", ["", "sk with space", "sk-key\n"])
def test_api_key_must_be_non_empty_without_whitespace(key):
    with pytest.raises(MissingApiKeyError, match="COWORK_LLM_API_KEY"):
        model(api_key=key)


def test_an_empty_key_is_fine_when_a_key_command_provides_it():
    assert model(api_key="", api_key_command="pass show openai").api_key_command == "pass show openai"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"model_name": "  "}, "llm.model.model_name must not be empty"),
        ({"temperature": 2.5}, "llm.model.temperature must be between 0 and 2"),
        ({"temperature": -0.1}, "llm.model.temperature must be between 0 and 2"),
        ({"max_tokens": 0}, "llm.model.max_tokens must be at least 1"),
        ({"provider": "cohere"}, "llm.model.provider must be one of openai, anthropic"),
        ({"timeout_seconds": 0}, "llm.model.timeout_seconds must be greater than 0"),
    ],
)
def test_model_rules_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        model(**overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"temperature": "hot"}, "llm.model.temperature must be a number, got 'hot'"),
        ({"max_tokens": 2.5}, "llm.model.max_tokens must be an integer, got 2.5"),
        ({"max_tokens": True}, "llm.model.max_tokens must be an integer, got True"),
        ({"allow_insecure_http": "yes"}, "llm.model.allow_insecure_http must be true or false, got 'yes'"),
        ({"model_name": 5}, "llm.model.model_name must be a string, got 5"),
        ({"temperature": float("nan")}, "llm.model.temperature must be a finite number, got nan"),
    ],
)
def test_type_errors_name_the_key_and_the_value(overrides, message):
    with pytest.raises(ConfigError) as info:
        model(**overrides)
    assert str(info.value) == message


def test_a_key_of_the_wrong_type_is_not_shown():
    with pytest.raises(ConfigError) as info:
        model(api_key=1234567890123)
    assert str(info.value) == "llm.model.api_key must be a string, got (hidden)"


def test_rate_limit_rules():
    assert RateLimitConfig().min_interval_seconds == 2.0
    assert RateLimitConfig(min_interval_seconds=0).min_interval_seconds == 0
    for overrides, fragment in [
        ({"min_interval_seconds": -1}, "min_interval_seconds must be 0 or more"),
        ({"min_interval_seconds": float("inf")}, "min_interval_seconds must be a finite number"),
        ({"max_concurrent": 0}, "max_concurrent must be at least 1"),
        ({"requests_per_minute": 0}, "requests_per_minute must be at least 1"),
        ({"tokens_per_minute": 0}, "tokens_per_minute must be at least 1"),
        ({"acquire_timeout_seconds": 0}, "acquire_timeout_seconds must be greater than 0"),
        ({"backend": "etcd"}, "backend must be one of memory, sqlite, redis"),
        ({"backend": "sqlite"}, "path is required when backend = 'sqlite'"),
        ({"backend": "redis"}, "redis_url is required when backend = 'redis'"),
        ({"key": " "}, "key must not be empty"),
    ]:
        with pytest.raises(ConfigError, match="llm.rate_limit." + fragment):
            RateLimitConfig(**overrides)


def test_retry_rules():
    assert RetryConfig().max_attempts == 5
    for overrides, fragment in [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"initial_wait_seconds": -1}, "initial_wait_seconds must be 0 or more"),
        ({"max_wait_seconds": -1}, "max_wait_seconds must be 0 or more"),
        ({"max_retry_after_seconds": -1}, "max_retry_after_seconds must be 0 or more"),
        ({"total_timeout_seconds": 0}, "total_timeout_seconds must be greater than 0"),
    ]:
        with pytest.raises(ConfigError, match="llm.retry." + fragment):
            RetryConfig(**overrides)


def test_cache_and_price_rules():
    assert CacheConfig().backend == "none"
    with pytest.raises(ConfigError, match="llm.cache.backend must be one of"):
        CacheConfig(backend="disk")
    with pytest.raises(ConfigError, match="llm.cache.path is required"):
        CacheConfig(backend="sqlite")
    with pytest.raises(ConfigError, match="input_per_million must be 0 or more"):
        ModelPrice(input_per_million=-1, output_per_million=1)


def test_llm_config_checks_its_sections():
    with pytest.raises(ConfigError, match="llm.model must be a ModelConfig"):
        LlmConfig(model={"base_url": "x"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="llm.fallback entries"):
        LlmConfig(model=model(), fallback=({"a": 1},))  # type: ignore[arg-type]


def test_repr_and_str_mask_every_key():
    m = model(extra_api_keys=("sk-second-key-9876543210",))
    config = LlmConfig(model=m, fallback=(model(api_key="sk-fallback-key-111122223333"),))
    for text in (repr(m), str(m), repr(config), str(config)):
        assert KEY not in text
        assert "sk-second-key-9876543210" not in text
        assert "'sk-…cdef'" in text
    assert "sk-fallback-key-111122223333" not in repr(config)


def test_mask_secret_shows_only_a_short_prefix_and_suffix():
    assert mask_secret(KEY) == "'sk-…cdef'"
    assert mask_secret("short") == "'…'"
    assert mask_secret("") == "''"
    assert mask_secret(None) == "''"


def test_configs_are_immutable_and_hashable():
    config = LlmConfig(model=model(), sources={"model.api_key": "default"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.api_key = "other"  # type: ignore[misc]
    assert hash(config) == hash(LlmConfig(model=model()))
    assert config == LlmConfig(model=model())  # sources do not take part in equality
