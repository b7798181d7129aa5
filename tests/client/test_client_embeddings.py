"""embed() through the whole stack (create_llm_client → FakeLlmServer's /v1/embeddings):
batches each with a limiter slot and a token estimate, input order, retries, usage and
cost on their own line, the per-text cache, configuration errors before any request,
many threads at once, and the official openai SDK reading the same server."""

import dataclasses
import threading
import time

import pytest

from cowork_llm import ConfigError, ServerError, create_llm_client, load_config
from cowork_llm.client import RateLimitedLlm
from cowork_llm.config import CacheConfig, EmbeddingsConfig, ModelPrice
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.rate_limiter._rates import estimate_embedding_tokens
from cowork_llm.testing import FakeLlmServer, MockLlm
from cowork_llm.testing._echo import hash_vector

KEY = "sk-embed-SECRET-0123456789abcdef"
TEXTS = [f"text number {i}" for i in range(7)]


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as srv:
        yield srv


def client_for(server, batch_size=256, **overrides):
    config = server.config(**overrides)
    config = dataclasses.replace(config, embeddings=EmbeddingsConfig(model_name="emb-small",
                                                                     batch_size=batch_size))
    return create_llm_client(config)


def test_vectors_come_back_in_input_order_from_batches_of_batch_size(server):
    with client_for(server, batch_size=3) as llm:
        result = llm.embed(TEXTS)
    assert result.vectors == [pytest.approx(hash_vector(t)) for t in TEXTS]
    assert result.requests == 3
    sent = [r.body["input"] for r in server.embedding_requests]
    assert sent == [TEXTS[0:3], TEXTS[3:6], TEXTS[6:7]]
    assert all(r.body["model"] == "emb-small" and r.api_key == KEY for r in server.embedding_requests)
    assert result.usage is not None and result.usage.prompt_tokens == sum(
        len(t) // 4 + (len(t) % 4 > 0) for t in TEXTS)


def test_each_batch_takes_its_own_limiter_slot(server, monkeypatch):
    granted = []
    original = RateLimiter.acquire

    def recording(self, weight=1, tokens=0, **options):
        slot = original(self, weight, tokens, **options)
        granted.append(time.monotonic())
        return slot

    monkeypatch.setattr(RateLimiter, "acquire", recording)
    with client_for(server, batch_size=2, min_interval_seconds=0.25) as llm:
        llm.embed(TEXTS[:6])
    assert len(server.embedding_requests) == 3 and len(granted) == 3
    # Measured at admission: arrival at the server adds the (loaded) machine's scheduling
    # noise, which is the limiter's business only up to its 1 % margin.
    gaps = [b - a for a, b in zip(granted[:-1], granted[1:], strict=True)]
    assert min(gaps) >= 0.25 - 0.005, gaps


def test_each_batch_weighs_its_own_token_estimate(server, monkeypatch):
    weights = []
    with client_for(server, batch_size=4, tokens_per_minute=1_000_000) as llm:
        original = RateLimiter.slot

        def spy(self, weight=1, tokens=0, **options):
            weights.append(tokens)
            return original(self, weight, tokens, **options)

        monkeypatch.setattr(RateLimiter, "slot", spy)
        llm.embed(TEXTS)
    assert weights == [estimate_embedding_tokens(TEXTS[:4]), estimate_embedding_tokens(TEXTS[4:])]
    assert all(w > 0 for w in weights)


def test_a_failed_batch_is_retried_through_the_limiter(server):
    server.fail_next(503, path=server.EMBEDDINGS_PATH)
    with client_for(server) as llm:
        result = llm.embed(["a", "b"])
        usage = llm.usage()
    assert len(result.vectors) == 2
    assert len(server.embedding_requests) == 2
    line = usage.embeddings["emb-small"]
    assert (line.requests, line.retries, line.failures) == (1, 1, 0)


def test_a_final_failure_is_raised_and_counted(server):
    server.fail_next(503, path=server.EMBEDDINGS_PATH, times=10)
    with client_for(server, max_attempts=2) as llm:
        with pytest.raises(ServerError) as caught:
            llm.embed(["a"])
        assert caught.value.attempts == 2
        assert llm.usage().embeddings["emb-small"].failures == 1


def test_usage_has_its_own_embeddings_line_and_cost_from_input_price(server):
    config = dataclasses.replace(
        server.config(), embeddings=EmbeddingsConfig(model_name="emb-small"),
        pricing={"emb-small": ModelPrice(input_per_million=0.02, output_per_million=0.0)})
    with create_llm_client(config) as llm:
        llm.chat([{"role": "user", "content": "hi"}])
        result = llm.embed(TEXTS)
        usage = llm.usage()
    assert set(usage.models) == {"fake-model"}  # chat totals untouched by embeddings
    assert usage.total.requests == 1
    line = usage.embeddings["emb-small"]
    assert line.requests == 1 and line.prompt_tokens == result.usage.prompt_tokens
    assert line.completion_tokens == 0
    assert line.cost == pytest.approx(result.usage.prompt_tokens * 0.02 / 1_000_000)
    text = str(usage).splitlines()
    assert len(text) == 2 and text[1].startswith("embeddings: 1 request (0 cached, 0 failed), ")
    assert usage.to_dict()["embeddings"]["emb-small"]["requests"] == 1


def test_the_cache_answers_per_text_and_only_the_rest_is_sent(server):
    config = dataclasses.replace(server.config(), embeddings=EmbeddingsConfig(model_name="emb-small"),
                                 cache=CacheConfig(backend="memory"))
    with create_llm_client(config) as llm:
        first = llm.embed(["a", "b"])
        again = llm.embed(["b", "a"])
        mixed = llm.embed(["a", "c", "b"])
        skipped = llm.embed(["a"], cache=False)
        other_size = llm.embed(["a"], dimensions=4)
    inputs = [r.body["input"] for r in server.embedding_requests]
    assert inputs == [["a", "b"], ["c"], ["a"], ["a"]]
    assert again.cached and again.vectors == [first.vectors[1], first.vectors[0]]
    assert not mixed.cached and mixed.vectors == [first.vectors[0], pytest.approx(hash_vector("c")),
                                                  first.vectors[1]]
    assert skipped.vectors == [first.vectors[0]] and not skipped.cached
    assert len(other_size.vectors[0]) == 4


def test_the_cache_never_answers_a_chat_with_an_embedding(server):
    config = dataclasses.replace(server.config(), embeddings=EmbeddingsConfig(model_name="fake-model"),
                                 cache=CacheConfig(backend="memory"))
    with create_llm_client(config) as llm:
        llm.embed(["hello"])
        assert llm.chat([{"role": "user", "content": "hello"}]).content == "echo: hello"


@pytest.mark.parametrize("embeddings, words", [
    (EmbeddingsConfig(), "no embeddings model is configured"),
    (EmbeddingsConfig(model_name="e", provider="anthropic"), "Anthropic has no embeddings endpoint"),
])
def test_configuration_errors_come_at_embed_before_any_request(server, embeddings, words):
    config = dataclasses.replace(server.config(), embeddings=embeddings)
    with create_llm_client(config) as llm:
        assert llm.chat([{"role": "user", "content": "hi"}]).content == "echo: hi"  # chat still works
        with pytest.raises(ConfigError, match=words):
            llm.embed(["a"])
    assert server.embedding_requests == []


def test_an_anthropic_client_says_to_configure_an_openai_compatible_server(server):
    config = dataclasses.replace(server.config(provider="anthropic"),
                                 embeddings=EmbeddingsConfig(model_name="e"))
    with create_llm_client(config) as llm, pytest.raises(ConfigError, match=r"\[llm.embeddings\]"):
        llm.embed(["a"])
    assert server.requests == []


def test_embeddings_variables_default_to_the_model_sections(server, monkeypatch):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COWORK_LLM_EMBEDDINGS_MODEL_NAME", "emb-from-env")
    monkeypatch.setenv("COWORK_LLM_EMBEDDINGS_BATCH_SIZE", "2")
    config = load_config()
    assert config.embeddings.model_name == "emb-from-env"
    assert config.sources["embeddings.model_name"] == "env:COWORK_LLM_EMBEDDINGS_MODEL_NAME"
    with create_llm_client(config) as llm:
        llm.embed(["a", "b", "c"])
    assert [r.body["model"] for r in server.embedding_requests] == ["emb-from-env"] * 2


def test_an_embeddings_key_of_its_own(monkeypatch):
    with FakeLlmServer(api_key=["chat-key-0123456789", "emb-key-0123456789"]) as srv:
        own = EmbeddingsConfig(model_name="e", api_key="emb-key-0123456789")
        config = dataclasses.replace(srv.config(api_key="chat-key-0123456789"), embeddings=own)
        with create_llm_client(config) as llm:
            llm.embed(["a"])
            llm.chat([{"role": "user", "content": "hi"}])
        assert srv.embedding_requests[0].api_key == "emb-key-0123456789"
        assert srv.chat_requests[0].api_key == "chat-key-0123456789"


def test_many_threads_embedding_at_once_each_get_their_own_vectors(server):
    results = {}
    errors = []
    start = threading.Barrier(12)
    with client_for(server, batch_size=2, max_concurrent=4) as llm:
        def work(n):
            texts = [f"thread {n} text {i}" for i in range(5)]
            start.wait()
            try:
                results[n] = (texts, llm.embed(texts).vectors)
            except Exception as error:  # pragma: no cover - shown by the assert below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        usage = llm.usage()
    assert not errors
    for texts, vectors in results.values():
        assert vectors == [pytest.approx(hash_vector(t)) for t in texts]
    assert len(server.embedding_requests) == 12 * 3
    assert usage.embeddings["emb-small"].requests == 36


def test_the_embeddings_client_is_built_once_under_many_threads(server, monkeypatch):
    import cowork_llm.providers as providers

    built = []
    real = providers.build_embedder

    def counting(config):
        built.append(1)
        return real(config)

    monkeypatch.setattr("cowork_llm.client._factory.build_embedder", counting)
    with client_for(server) as llm:
        barrier = threading.Barrier(8)

        def work():
            barrier.wait()
            llm.embed(["x"])

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert built == [1]


def test_mock_llm_behind_the_limiter_embeds_deterministically():
    mock = MockLlm()
    llm = RateLimitedLlm(mock, batch_size=2)
    result = llm.embed(["a", "b", "c"], dimensions=5)
    assert result.vectors == [hash_vector(t, 5) for t in "abc"]
    assert [c.kind for c in mock.calls] == ["embed", "embed"]
    assert mock.calls[0].options == {"dimensions": 5}
    assert MockLlm().embed(["a"]).vectors == MockLlm().embed(["a"]).vectors
    assert MockLlm().embed(["a"]).vectors != MockLlm().embed(["b"]).vectors


def test_mock_llm_raises_a_queued_error_from_embed_and_the_client_retries_it():
    from cowork_llm.config import RetryConfig
    from cowork_llm.retry import RetryPolicy

    mock = MockLlm().fail_next(ServerError("boom", status_code=503))
    llm = RateLimitedLlm(mock, retry=RetryPolicy(RetryConfig(initial_wait_seconds=0, max_wait_seconds=0)))
    assert len(llm.embed(["a"]).vectors) == 1
    assert mock.call_count == 2


@pytest.mark.parametrize("encoding_format", ["float", None])
def test_the_official_openai_sdk_parses_the_fake_servers_embeddings(server, encoding_format):
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    # Without encoding_format the SDK asks for base64 itself and decodes the float32s.
    options = {"encoding_format": encoding_format} if encoding_format else {}
    created = sdk.embeddings.create(model="emb", input=["one", "two"], dimensions=6, **options)
    assert server.last_request.body["encoding_format"] == (encoding_format or "base64")
    assert [d.index for d in created.data] == [0, 1]
    assert created.data[1].embedding == pytest.approx(hash_vector("two", 6))
    assert created.usage.prompt_tokens == created.usage.total_tokens > 0
    assert created.model == "emb"
