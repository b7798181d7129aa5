"""embed() against llama.cpp's own server started with embeddings enabled (a server
nobody here wrote): vectors of the model's length, the same text the same vector,
different texts different ones, batches in order, and the server's quirks
(docs/llamacpp-notes.md, "Embeddings")."""

import dataclasses
import math
import os
from typing import Any, Iterator

import pytest

from cowork_llm import InvalidResponseError, create_llm_client
from cowork_llm.config import EmbeddingsConfig

from .conftest import _missing_packages

pytestmark = pytest.mark.realserver

GEMMA_WIDTH = 640  # Gemma 3 270M's hidden size: the length of each pooled vector


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[Any]:
    missing = _missing_packages()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the realserver tests must run, but {missing}", pytrace=False)
        pytest.skip(missing)
    from cowork_llm.testing.llamacpp import LlamaCppServer

    with LlamaCppServer(embeddings=True) as server:
        yield server


@pytest.fixture
def llm(embedding_server: Any) -> Iterator[Any]:
    config = dataclasses.replace(embedding_server.config(),
                                 embeddings=EmbeddingsConfig(model_name="gemma-3-270m", batch_size=2))
    client = create_llm_client(config)
    yield client
    client.close()


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_vectors_have_the_models_width_and_are_deterministic(llm: Any) -> None:
    texts = ["The cat sat on the mat.", "Quarterly revenue rose by four percent.", "The cat sat on the mat."]
    result = llm.embed(texts)
    assert result.requests == 2  # batch_size 2: [0, 1] then [2]
    assert [len(v) for v in result.vectors] == [GEMMA_WIDTH] * 3
    assert all(math.isfinite(x) for v in result.vectors for x in v)
    assert result.vectors[0] == pytest.approx(result.vectors[2], abs=1e-5)  # same text, same vector
    assert cosine(result.vectors[0], result.vectors[1]) < 0.999  # different texts differ
    assert result.usage is not None and result.usage.prompt_tokens > 0
    line = llm.usage().embeddings["gemma-3-270m"]
    assert line.requests == 2 and line.prompt_tokens == result.usage.prompt_tokens


def test_batches_come_back_in_input_order(llm: Any) -> None:
    texts = [f"sentence number {i} about topic {i * 7}" for i in range(5)]
    together = llm.embed(texts).vectors
    one_by_one = [llm.embed([t]).vectors[0] for t in texts]
    for a, b in zip(together, one_by_one, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_dimensions_are_ignored_by_the_server_and_refused_by_the_client(llm: Any) -> None:
    with pytest.raises(InvalidResponseError, match="asked for vectors of 8 numbers, got 640"):
        llm.embed(["hello"], dimensions=8)


def test_the_official_openai_sdk_reads_the_servers_base64(embedding_server: Any) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=embedding_server.base_url, api_key=embedding_server.api_key, max_retries=0)
    created = sdk.embeddings.create(model="gemma-3-270m", input=["hello"])  # base64 by default
    assert len(created.data[0].embedding) == GEMMA_WIDTH
