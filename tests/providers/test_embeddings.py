"""The embeddings wire format: the body we send validates against the official OpenAI
spec's CreateEmbeddingRequest, our fake's answers against CreateEmbeddingResponse, and
answers are parsed strictly (order by index, one vector per text, base64, dimensions)."""

import base64
import json
import os
import struct

import jsonschema
import pytest
import responses

from cowork_llm.config import EmbeddingsConfig, LlmConfig, ModelConfig
from cowork_llm.errors import ConfigError, InvalidResponseError, ServerError
from cowork_llm.providers import build_embedder, embeddings_model
from cowork_llm.providers._embeddings import embeddings_body
from cowork_llm.providers.anthropic import AnthropicClient
from cowork_llm.providers.openai import OpenAIClient
from cowork_llm.testing import FakeLlmServer
from cowork_llm.testing._echo import hash_vector

KEY = "sk-emb-test-0123456789SECRET"
BASE = "https://api.example.com/v1"
URL = BASE + "/embeddings"
# CreateEmbeddingRequest/Response and Embedding, extracted unchanged from the official
# OpenAI OpenAPI description (shared/openai-openapi/openapi.json, MIT) so CI has them.
SPEC = os.path.join(os.path.dirname(__file__), "..", "data", "openai-openapi", "embeddings.json")


def validator(name):
    with open(SPEC, encoding="utf-8") as f:
        spec = json.load(f)
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **spec})


def client(**overrides):
    fields = {"base_url": BASE, "api_key": KEY, "model_name": "text-embedding-3-small"}
    fields.update(overrides)
    return OpenAIClient(ModelConfig(**fields))


def answer(vectors, *, order=None, usage=True):
    order = order if order is not None else range(len(vectors))
    body = {"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": i, "embedding": vectors[i]} for i in order]}
    if usage:
        body["usage"] = {"prompt_tokens": 7, "total_tokens": 7}
    return body


@pytest.mark.parametrize("dimensions", [None, 256])
def test_the_body_validates_against_the_official_spec(dimensions):
    body = embeddings_body("text-embedding-3-small", ["one", "two"], dimensions)
    validator("CreateEmbeddingRequest").validate(body)
    assert body["encoding_format"] == "float"
    assert ("dimensions" in body) == (dimensions is not None)


def test_the_spec_check_can_fail():
    check = validator("CreateEmbeddingRequest").validate
    with pytest.raises(jsonschema.ValidationError):
        check({"model": "m", "input": ["a"], "encoding_format": "int8"})
    with pytest.raises(jsonschema.ValidationError):
        check({"model": "m", "input": ["a"], "dimensions": 0})


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_the_fake_servers_answer_validates_against_the_official_spec(encoding_format):
    import requests

    with FakeLlmServer() as server:
        reply = requests.post(server.base_url + "/embeddings", timeout=5,
                              headers={"Authorization": "Bearer k"},
                              json={"model": "m", "input": ["a", "b"], "encoding_format": encoding_format})
    assert reply.status_code == 200
    body = reply.json()
    if encoding_format == "float":
        validator("CreateEmbeddingResponse").validate(body)
    else:  # the spec types the embedding as floats only; base64 is a string of float32
        packed = base64.b64decode(body["data"][0]["embedding"])
        assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(hash_vector("a"))


@responses.activate
def test_embed_posts_to_base_url_embeddings_and_orders_by_index():
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    responses.post(URL, json=answer(vectors, order=[2, 0, 1]), headers={"x-request-id": "req_1"})
    with client() as llm:
        result = llm.embed(["a", "b", "c"])
    assert result.vectors == vectors
    assert result.model == "text-embedding-3-small"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 0)
    assert result.request_id == "req_1"
    (call,) = responses.calls
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(call.request.body) == {"model": "text-embedding-3-small", "input": ["a", "b", "c"],
                                             "encoding_format": "float"}


@responses.activate
def test_base64_vectors_are_decoded():
    packed = base64.b64encode(struct.pack("<3f", 0.25, -0.5, 1.0)).decode()
    responses.post(URL, json=answer([packed]))
    with client() as llm:
        assert llm.embed(["a"]).vectors == [[0.25, -0.5, 1.0]]


@pytest.mark.parametrize("body, words", [
    (answer([[1.0]]), "1 embeddings for 2 input texts"),
    ({"object": "list", "data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]},
     "repeated or out-of-range index"),
    (answer([[1.0], ["x"]]), "not a list of finite numbers"),
    (answer([[1.0], [1.0, 2.0]]), "different lengths"),
    ({"error": "nope"}, "no data list"),
])
@responses.activate
def test_unusable_answers_are_invalid_response_errors(body, words):
    responses.post(URL, json=body)
    with client() as llm, pytest.raises(InvalidResponseError, match=words):
        llm.embed(["a", "b"])


@responses.activate
def test_vectors_of_another_length_than_the_dimensions_asked_for_are_refused():
    # llama.cpp ignores "dimensions" and answers its model's full length
    responses.post(URL, json=answer([[0.1] * 640]))
    with client() as llm, pytest.raises(InvalidResponseError, match="vectors of 8 numbers, got 640"):
        llm.embed(["a"], dimensions=8)


@responses.activate
def test_errors_map_and_never_show_the_key():
    responses.post(URL, status=503, json={"error": {"message": f"down {KEY}", "type": "server_error"}})
    with client() as llm, pytest.raises(ServerError) as caught:
        llm.embed(["a"])
    assert KEY not in str(caught.value)


@pytest.mark.parametrize("texts, words", [
    ("one text", "for one text pass"), ([], "must not be empty"), (["a", ""], r"texts\[1\] is empty"),
    (["a", 3], r"texts\[1\] must be a string"),
])
@responses.activate
def test_bad_texts_are_value_errors_before_any_request(texts, words):
    with client() as llm, pytest.raises(ValueError, match=words):
        llm.embed(texts)
    assert not responses.calls


def test_anthropic_has_no_embeddings():
    llm = AnthropicClient(ModelConfig(base_url="https://api.anthropic.com/v1", api_key=KEY,
                                      model_name="claude", provider="anthropic"))
    with pytest.raises(ConfigError, match=r"configure \[llm.embeddings\] with an OpenAI-compatible"):
        llm.embed(["a"])


# --- which model section embeddings use ---------------------------------------------------


MODEL = ModelConfig(base_url="https://chat.example/v1", api_key=KEY, model_name="chat-model",
                    timeout_seconds=7.0)


def test_embeddings_default_to_the_model_sections_endpoint_and_key():
    derived = embeddings_model(LlmConfig(model=MODEL, embeddings=EmbeddingsConfig(model_name="emb")))
    assert (derived.base_url, derived.api_key, derived.provider, derived.model_name) == \
        (MODEL.base_url, KEY, "openai", "emb")
    assert derived.timeout_seconds == 7.0


def test_embeddings_with_their_own_endpoint_and_key():
    own = EmbeddingsConfig(model_name="emb", base_url="https://emb.example/v1", api_key="sk-emb-own-key-123")
    derived = embeddings_model(LlmConfig(model=MODEL, embeddings=own))
    assert (derived.base_url, derived.api_key) == ("https://emb.example/v1", "sk-emb-own-key-123")


@pytest.mark.parametrize("model, embeddings, words", [
    (MODEL, EmbeddingsConfig(), "no embeddings model is configured"),
    (MODEL, EmbeddingsConfig(model_name="e", provider="anthropic"), "Anthropic has no embeddings endpoint"),
    (ModelConfig(base_url="https://api.anthropic.com/v1", api_key=KEY, model_name="c", provider="anthropic"),
     EmbeddingsConfig(model_name="e"), "Anthropic has no embeddings endpoint"),
    (ModelConfig(base_url="https://api.anthropic.com/v1", api_key=KEY, model_name="c", provider="anthropic"),
     EmbeddingsConfig(model_name="e", provider="openai"), r"llm.embeddings.base_url is not set"),
])
def test_unusable_embeddings_settings_are_config_errors(model, embeddings, words):
    with pytest.raises(ConfigError, match=words):
        build_embedder(LlmConfig(model=model, embeddings=embeddings))


@pytest.mark.parametrize("fields, words", [
    ({"batch_size": 0}, "batch_size must be from 1 to 2048"),
    ({"batch_size": 5000}, "batch_size must be from 1 to 2048"),
    ({"provider": "cohere"}, "provider must be one of openai, anthropic"),
    ({"base_url": "ftp://x"}, "llm.embeddings.base_url must be an http"),
    ({"model_name": " "}, "llm.embeddings.model_name must not be empty"),
])
def test_embeddings_section_checks(fields, words):
    with pytest.raises(ConfigError, match=words):
        EmbeddingsConfig(**fields)


@responses.activate
def test_embed_goes_to_base_url_slash_embeddings_whatever_the_base_url_ends_in():
    base = "https://gateway.example/deployments/EMBED-X/"  # a trailing slash is dropped, nothing else
    responses.post("https://gateway.example/deployments/EMBED-X/embeddings", json=answer([[1.0]]))
    with client(base_url=base) as llm:
        assert llm.embed(["a"]).vectors == [[1.0]]
