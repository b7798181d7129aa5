"""What every HTTP provider refuses before it sends anything (the same check as
``cowork-llm init``): each refusal names the setting and says what to do."""

import pytest

from cowork_llm.config import ModelConfig
from cowork_llm.errors import ConfigError, InvalidBaseUrlError, MissingApiKeyError
from cowork_llm.providers import check_model_settings
from cowork_llm.providers._sessions import check_transport
from cowork_llm.providers.openai import OpenAIClient

KEY = "sk-settings-0123456789abcdef"


@pytest.mark.parametrize("base_url, suffix, fixed", [
    ("https://api.openai.com/v1/chat/completions", "/chat/completions", "https://api.openai.com/v1"),
    ("https://api.openai.com/V1/Chat/Completions/", "/chat/completions", "https://api.openai.com/V1"),
    ("https://api.anthropic.com/v1/messages", "/messages", "https://api.anthropic.com/v1"),
    ("https://api.openai.com/v1/embeddings", "/embeddings", "https://api.openai.com/v1"),
])
def test_a_base_url_that_ends_in_an_endpoint_path_is_refused_with_the_fix(base_url, suffix, fixed):
    with pytest.raises(InvalidBaseUrlError) as info:
        check_model_settings(ModelConfig(base_url=base_url, api_key=KEY, model_name="m"), "llm.fallback[0]")
    assert info.value.key == "llm.fallback[0].base_url"
    assert str(info.value).startswith(
        f"llm.fallback[0].base_url {base_url!r} ends in {suffix}, which the client adds itself: "
        f"drop the suffix (base_url = {fixed!r})")


def test_a_missing_ca_bundle_is_refused_naming_the_setting(tmp_path):
    missing = str(tmp_path / "corp-ca.pem")
    config = ModelConfig(base_url="https://llm.corp.example/v1", api_key=KEY, model_name="m",
                         ca_bundle=missing)
    with pytest.raises(ConfigError) as info:
        check_model_settings(config, "llm.model")
    assert info.value.key == "llm.model.ca_bundle"
    assert str(info.value) == (f"llm.model.ca_bundle {missing!r} does not exist: give the path of a PEM "
                               "file (or directory) of CA certificates")


def test_plain_http_to_the_network_says_how_to_fix_it():
    with pytest.raises(ConfigError) as info:
        check_transport("http://gpu-box.lan:8000/v1", "gpu-box.lan", False, key="llm.model")
    assert str(info.value) == (
        "llm.model.base_url 'http://gpu-box.lan:8000/v1' is plain http to 'gpu-box.lan', which would "
        "send the API key unencrypted: use https://, or set llm.model.allow_insecure_http = true if "
        "the network is trusted")


def test_an_empty_key_passed_to_a_client_names_the_section_it_belongs_to():
    config = ModelConfig(base_url="https://api.example.com/v1", api_key=KEY, model_name="m")
    with pytest.raises(MissingApiKeyError) as info:
        OpenAIClient(config, api_key="", section="llm.fallback[0]")  # e.g. os.environ.get(..., "")
    assert info.value.key == "llm.fallback[0].api_key"
    assert "llm.fallback[0].api_key is empty" in str(info.value)
