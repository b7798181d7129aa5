"""``RateLimitedLlm.embed``: texts in batches of ``batch_size``, each batch one call
through the limiter and the retry policy, vectors back in input order.

Each batch is counted like a chat call (its own limiter slot and token estimate, its own
line in the usage totals' ``embeddings`` part). With a response cache, each text is
looked up on its own: only the texts not found are sent, and each vector sent for is
stored. A vector is stored in the cache's ChatResult slot as JSON text, so every cache
backend keeps it without a new storage format.
"""

import json
import logging
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

from ..errors import LlmError, RateLimitError
from ..llm import Llm
from ..rate_limiter._rates import estimate_embedding_tokens
from ..request._embed_input import check_dimensions, check_texts
from ..results import ChatResult, EmbeddingResult, Usage
from ._accounting import CallRecord, log_failure
from ._attempts import pause_for, with_retries

if TYPE_CHECKING:
    from ._rate_limited import RateLimitedLlm

__all__ = ["embed_in_batches", "DEFAULT_BATCH_SIZE"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 256
# The cache keys' "role": no chat message has it, so an embedding and a chat answer never
# share a key.
_CACHE_ROLE = "embedding-input"
_CACHE_REASON = "embedding"


def embed_in_batches(client: "RateLimitedLlm", texts: Sequence[str], dimensions: Optional[int],
                     use_cache: bool, batch_size: int) -> EmbeddingResult:
    """Raises what :meth:`RateLimitedLlm.embed` documents; a failed batch ends the call
    (the batches before it are counted, and cached when a cache is on)."""
    checked = check_texts(texts)
    dimensions = check_dimensions(dimensions)
    embedder = client.embedder()  # ConfigError when there is no embeddings model
    config = getattr(embedder, "config", None)
    model_name: str = getattr(config, "model_name", None) or embedder.name
    cache = client.response_cache if use_cache else None
    keys: List[str] = []
    vectors: List[Optional[List[float]]] = [None] * len(checked)
    if cache is not None:
        keys = [_cache_key(embedder, text, dimensions) for text in checked]
        for i, key in enumerate(keys):
            vectors[i] = _vector_of(cache.get(key))
    missing = [i for i, vector in enumerate(vectors) if vector is None]
    if not missing:  # every text came from the cache: nothing was sent
        client.usage_tracker.record_success(model_name, None, latency=0.0, cached=True, embeddings=True)
        return EmbeddingResult(vectors=[v for v in vectors if v is not None], model=model_name,
                               usage=None, cached=True, requests=0)
    answered_by = model_name
    prompt_tokens: Optional[int] = 0
    request_id = None
    batches = [missing[i:i + batch_size] for i in range(0, len(missing), batch_size)]
    for batch in batches:
        result = _one_batch(client, embedder, model_name, [checked[i] for i in batch], dimensions)
        for i, vector in zip(batch, result.vectors, strict=True):
            vectors[i] = vector
            if cache is not None:
                cache.put(keys[i], ChatResult(content=json.dumps(vector), model=result.model,
                                              finish_reason=_CACHE_REASON))
        answered_by, request_id = result.model, result.request_id
        prompt_tokens = None if prompt_tokens is None or result.usage is None \
            else prompt_tokens + result.usage.prompt_tokens
    return EmbeddingResult(
        vectors=[v for v in vectors if v is not None],
        model=answered_by,
        usage=None if prompt_tokens is None else Usage(prompt_tokens, 0, prompt_tokens),
        request_id=request_id,
        requests=len(batches),
    )


def _one_batch(client: "RateLimitedLlm", embedder: Llm, model_name: str, texts: List[str],
               dimensions: Optional[int]) -> EmbeddingResult:
    """One batch under the retry policy, counted in the usage totals."""
    record = CallRecord([{"role": _CACHE_ROLE, "content": text} for text in texts],
                        max_attempts=client._max_attempts)
    record.observations = client.start_observations(
        "embeddings", getattr(embedder, "config", None), model_name, {"dimensions": dimensions})
    began = time.monotonic()
    try:
        result = with_retries(client, lambda: _attempt(client, embedder, texts, dimensions, record), record)
    except BaseException as error:
        if isinstance(error, LlmError):
            client.usage_tracker.record_failure(model_name, retries=record.retries,
                                                waited=record.waited_seconds,
                                                latency=time.monotonic() - began, embeddings=True)
            log_failure(client.name + " embeddings", error, record)
        record.ended(None, error)
        raise
    latency = time.monotonic() - began
    client.usage_tracker.record_success(result.model, result.usage, latency=latency,
                                        waited=record.waited_seconds, retries=record.retries,
                                        embeddings=True)
    record.ended(result)
    logger.info("%s embeddings: %d texts, %s tokens, latency %.3fs, waited %.3fs, attempts %d",
                result.model, len(texts), result.usage.prompt_tokens if result.usage else "unreported",
                latency, record.waited_seconds, record.attempts)
    return result


def _attempt(client: "RateLimitedLlm", embedder: Llm, texts: List[str], dimensions: Optional[int],
             record: CallRecord) -> EmbeddingResult:
    """One request inside one limiter slot."""
    record.attempts += 1
    try:
        return _attempt_in_slot(client, embedder, texts, dimensions, record)
    except BaseException as error:
        record.attempt_failed(error)
        raise


def _attempt_in_slot(client: "RateLimitedLlm", embedder: Llm, texts: List[str],
                     dimensions: Optional[int], record: CallRecord) -> EmbeddingResult:
    tokens = 0 if client.limiter.config.tokens_per_minute is None else estimate_embedding_tokens(texts)
    with client.limiter.slot(tokens=tokens) as slot:
        record.slot_granted(slot.waited_seconds, slot.queue_position)
        record.started_at = time.time()
        started = time.monotonic()
        try:
            result = embedder.embed(texts, dimensions=dimensions)
        except RateLimitError as error:
            pause_for(client, error)  # while holding the slot, as for chat
            raise
        finally:
            record.request_seconds += time.monotonic() - started
    if len(result.vectors) != len(texts):  # a custom embedder's bug, not the provider's answer
        raise AssertionError(f"{embedder!r} returned {len(result.vectors)} vectors for {len(texts)} texts")
    return replace(result, requests=1)


def _cache_key(embedder: Llm, text: str, dimensions: Optional[int]) -> str:
    from ..cache.base import cache_key  # loaded already: whoever built the cache imported it

    config: Any = getattr(embedder, "config", None)
    if config is None:
        provider, base_url, model = type(embedder).__name__, "", embedder.name
    else:
        provider, base_url, model = config.provider, config.base_url, config.model_name
    return cache_key(provider, base_url, model, [{"role": _CACHE_ROLE, "content": text}],
                     {"dimensions": dimensions, "kind": "embedding"})


def _vector_of(hit: Optional[ChatResult]) -> Optional[List[float]]:
    """The vector stored in a cache entry; None for a miss or an entry that is not one."""
    if hit is None or hit.finish_reason != _CACHE_REASON:
        return None
    try:
        vector = json.loads(hit.content)
    except ValueError:
        return None
    if not isinstance(vector, list) or not vector or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
        return None
    return [float(x) for x in vector]

