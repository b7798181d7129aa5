"""Every option on both wire formats: the bodies we build, checked against OpenAI's
official spec and the official anthropic SDK's types; what the user who sets nothing
sends (unchanged); and the clear ValueErrors, before any request, for what a provider has
no place for."""

import base64
import dataclasses
import itertools
import json
from typing import List, Optional

import pytest

from cowork_llm.config import ModelConfig
from cowork_llm.providers.anthropic import AnthropicClient
from cowork_llm.providers.openai import OpenAIClient

from ._wire_checks import check_anthropic_body, openai_request_validator

KEY = "sk-test-0123456789abcdefSECRET"
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake bytes").decode()
SIMPLE = [{"role": "user", "content": "Hello"}]
RICH = [
    {"role": "system", "content": "Be brief"},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in English"}]},
    {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                 {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
                                 {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]},
    {"role": "assistant", "content": "A picture."},
    {"role": "user", "content": "Are you sure?"},
]
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"sure": {"type": "boolean"}}, "required": ["sure"],
    "additionalProperties": False}}}


@dataclasses.dataclass
class Verdict:
    sure: bool
    reasons: List[str]
    confidence: Optional[float]


def config(provider="openai", base_url="https://api.example.com/v1", **fields):
    return ModelConfig(base_url=base_url, api_key=KEY, model_name="m", provider=provider, **fields)


# --- OpenAI ------------------------------------------------------------------------------------

OPENAI_OPTIONS = [
    {}, {"temperature": 0.7, "max_tokens": 64}, {"top_p": 0.5}, {"stop": "END"},
    {"stop": ["a", "b", "c", "d"]},
    {"seed": 42}, {"response_format": {"type": "json_object"}}, {"response_format": {"type": "text"}},
    {"response_format": SCHEMA}, {"response_format": Verdict}, {"reasoning_effort": "minimal"},
    {"reasoning_effort": "high", "max_tokens": 4000}, {"extra_body": {"logprobs": True, "top_logprobs": 2}},
]


@pytest.mark.parametrize("messages", [SIMPLE, RICH], ids=["simple", "rich"])
@pytest.mark.parametrize("options", OPENAI_OPTIONS, ids=lambda o: ",".join(o) or "none")
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("stream", [False, True])
def test_every_openai_body_validates_against_the_official_spec(messages, options, field, stream):
    with OpenAIClient(config(max_tokens_field=field)) as llm:
        body = llm.request_body(messages, stream=stream, **options)
    openai_request_validator().validate(body)
    if "max_tokens" in options:
        assert body[field] == options["max_tokens"]


def test_every_option_goes_out_under_the_apis_own_name():
    with OpenAIClient(config()) as llm:
        body = llm.request_body(RICH + [{"role": "user", "content": "x", "name": "alice"}], temperature=0.1,
                                top_p=0.2, max_tokens=30, stop="END", seed=9, response_format=Verdict,
                                reasoning_effort="low", extra_body={"service_tier": "flex", "seed": 10})
    assert body["messages"][:5] == RICH and body["messages"][5]["name"] == "alice"
    sent = [body[name] for name in ("temperature", "top_p", "max_tokens", "stop", "reasoning_effort")]
    assert sent == [0.1, 0.2, 30, ["END"], "low"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Verdict"
    assert body["response_format"]["json_schema"]["strict"] is True
    # extra_body is merged last: it adds what is not modelled and wins over what is.
    assert body["service_tier"] == "flex" and body["seed"] == 10


def test_a_user_who_sets_nothing_sends_what_was_always_sent():
    with OpenAIClient(config()) as llm:
        assert llm.request_body(SIMPLE) == {"model": "m", "messages": SIMPLE}
    with OpenAIClient(config(base_url="http://127.0.0.1:8080/v1", temperature=0.2, max_tokens=9)) as llm:
        assert llm.request_body(SIMPLE) == {"model": "m", "messages": SIMPLE, "temperature": 0.2,
                                            "max_tokens": 9}
    with AnthropicClient(config("anthropic")) as llm:
        assert llm.request_body(SIMPLE) == {"model": "m", "messages": SIMPLE, "max_tokens": 1024}


@pytest.mark.parametrize("base_url, setting, expected", [
    ("https://api.openai.com/v1", "auto", "max_completion_tokens"),
    ("https://my-resource.openai.azure.com/openai/v1", "auto", "max_completion_tokens"),
    ("http://127.0.0.1:8080/v1", "auto", "max_tokens"),
    ("https://openrouter.example/api/v1", "auto", "max_tokens"),
    ("https://api.openai.com/v1", "max_tokens", "max_tokens"),
    ("http://127.0.0.1:8080/v1", "max_completion_tokens", "max_completion_tokens"),
])
def test_the_token_limit_field_follows_max_tokens_field(base_url, setting, expected):
    with OpenAIClient(config(base_url=base_url, max_tokens_field=setting, max_tokens=10)) as llm:
        body = llm.request_body(SIMPLE)
    assert body[expected] == 10 and len({"max_tokens", "max_completion_tokens"} & set(body)) == 1


# --- Anthropic ---------------------------------------------------------------------------------

ANTHROPIC_OPTIONS = [
    {}, {"max_tokens": 64}, {"stop": ["END", "STOP"]}, {"response_format": SCHEMA},
    {"response_format": Verdict},
    {"reasoning_effort": "low"}, {"reasoning_effort": "none"}, {"reasoning_effort": "max", "max_tokens": 100},
    {"extra_body": {"metadata": {"user_id": "u1"}}},
]


@pytest.mark.parametrize("messages", [SIMPLE, RICH], ids=["simple", "rich"])
@pytest.mark.parametrize("options", ANTHROPIC_OPTIONS, ids=lambda o: ",".join(o) or "none")
@pytest.mark.parametrize("stream", [False, True])
def test_every_anthropic_body_validates_against_the_official_sdk_types(messages, options, stream):
    with AnthropicClient(config("anthropic")) as llm:
        body = llm.request_body(messages, stream=stream, **options)
    check_anthropic_body(body)


def test_the_sdk_check_is_not_vacuous():
    import pydantic

    good = {"model": "m", "max_tokens": 5, "messages": SIMPLE}
    check_anthropic_body(good)
    for bad in [dict(good, temperature=0.5), dict(good, max_tokens="5"),
                dict(good, messages=[{"role": "user", "content": "x", "name": "a"}]),
                dict(good, messages=[{"role": "user", "content": [
                    {"type": "image",
                     "source": {"type": "base64", "media_type": "image/bmp", "data": "AA"}}]}]),
                dict(good, output_config={"format": {"type": "json_object"}})]:
        with pytest.raises(pydantic.ValidationError):
            check_anthropic_body(bad)


def test_the_anthropic_translation():
    with AnthropicClient(config("anthropic", max_tokens=500)) as llm:
        body = llm.request_body(RICH, stop="END", response_format=SCHEMA, reasoning_effort="medium")
    assert body["system"] == "Be brief\n\nAnswer in English"
    image_blocks = body["messages"][0]["content"][1:]
    media, data = PNG[len("data:"):].split(";base64,")
    assert image_blocks == [{"type": "image",
                             "source": {"type": "base64", "media_type": media, "data": data}},
                            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}]
    assert body["stop_sequences"] == ["END"]
    assert body["output_config"] == {"format": {"type": "json_schema",
                                                "schema": SCHEMA["json_schema"]["schema"]}}
    # Thinking tokens count toward max_tokens: 500 leaves no room after an 8192 budget.
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 8192 + 1024


@pytest.mark.parametrize("messages, options, fragment", [
    (SIMPLE, {"temperature": 0.5}, "the current Anthropic Messages API has no temperature"),
    (SIMPLE, {"top_p": 0.5}, "has no top_p"),
    (SIMPLE, {"seed": 1}, "Anthropic has no seed"),
    (SIMPLE, {"response_format": {"type": "json_object"}}, "json_object'} has no Anthropic equivalent"),
    ([{"role": "user", "content": "x", "name": "alice"}], {}, r"messages\[0\]\['name'\]: Anthropic messages"),
    ([{"role": "system", "content": "only"}], {}, "at least one user or assistant message"),
])
def test_what_anthropic_has_no_place_for_is_a_value_error_before_any_request(messages, options, fragment):
    from cowork_llm.testing import FakeLlmServer

    with FakeLlmServer() as server, AnthropicClient(server.config(provider="anthropic").model) as llm:
        with pytest.raises(ValueError, match=fragment):
            llm.chat(messages, **options)
        assert server.request_count == 0


def test_every_option_combination_builds_or_fails_with_a_value_error():
    """No combination of options crashes with anything but a ValueError, on either provider."""
    choices = {"temperature": [None, 0.5], "stop": [None, "x"], "seed": [None, 3],
               "response_format": [None, {"type": "json_object"}, Verdict],
               "reasoning_effort": [None, "none", "high"]}
    for values in itertools.product(*choices.values()):
        options = {k: v for k, v in zip(choices, values, strict=True) if v is not None}
        for provider in ("openai", "anthropic"):
            llm = OpenAIClient(config()) if provider == "openai" else AnthropicClient(config("anthropic"))
            try:
                body = llm.request_body(RICH, **options)
            except ValueError:
                assert provider == "anthropic", options
                continue
            finally:
                llm.close()
            json.dumps(body)  # plain JSON
            if provider == "openai":
                openai_request_validator().validate(body)
            else:
                check_anthropic_body(body)
