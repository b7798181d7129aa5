"""RateLimitedLlm: any :class:`~cowork_llm.llm.Llm` behind a rate limiter and a retry
policy. Every attempt, retries included, takes its own limiter slot: each is a request
and counts against the quota.

The call runs in layers, each a method, so later features wrap one of them:
:meth:`RateLimitedLlm.send` (what ``chat()`` calls once the arguments are checked)
answers from the response cache when it can (before the limiter: a hit spends no quota
and no wait), and counts and logs the outcome (:mod:`._accounting`, shared with
:meth:`RateLimitedLlm.send_stream`, :mod:`._stream`);
:meth:`RateLimitedLlm._call` runs the retry loop; :meth:`RateLimitedLlm._attempt` is one
request inside one slot (both in :mod:`._attempts`). :meth:`RateLimitedLlm.embed` sends
texts in batches, each one call through the same limiter and retries (:mod:`._embed`).
What the observers are told about each call is built in :mod:`._observed`.
"""

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from ..config._sections import ModelConfig, RetryConfig
from ..errors import ClientClosedError, LlmError
from ..limits import LimitsSnapshot
from ..llm import Llm
from ..request._options import ChatOptions
from ..request._structured import with_parsed
from ..results import ChatResult, EmbeddingResult
from ..streaming import ChatStream
from ..telemetry._observer import Observer
from ..usage import UsageSnapshot, UsageTracker
from ._accounting import CallRecord, count_failure, count_success, log_failure
from ._attempts import chat_attempt, resending_once, with_retries
from ._embed import DEFAULT_BATCH_SIZE, embed_in_batches
from ._observed import new_record, observations_of
from ._stream import open_limited_stream

if TYPE_CHECKING:
    from ..cache.base import ResponseCache
    from ..health import HealthStatus
    from ..rate_limiter._gate import RateLimiter
    from ..retry import RetryPolicy

__all__ = ["RateLimitedLlm"]

T = TypeVar("T")


class RateLimitedLlm(Llm):
    """Wraps ``inner``: each attempt waits for a slot of ``limiter`` (the process-wide
    "default" limiter when None), and ``retry`` (a RetryPolicy) runs failed attempts
    again. Safe to share between threads.

    A 429 carrying Retry-After pauses the whole limiter before the slot is given back,
    so the other threads wait too (unless it asks for more than
    ``max_retry_after_seconds``: then the call fails at once and nobody is held).

    ``usage`` receives every call's tokens, waits and cost (a tracker without prices
    when None; read it with :meth:`usage`). ``cache``, when given, answers repeated
    requests without the limiter or the network; the client owns it and closes it.
    ``observers`` (:mod:`cowork_llm.telemetry`) are told each call's life: limiter slots,
    failed attempts, retries, cache hits, the end (none when omitted).

    ``embeddings`` builds the Llm that answers :meth:`embed` (called on the first
    ``embed()``; it raises ConfigError when no embeddings model is configured); without
    it, ``inner`` embeds. ``batch_size`` is the most texts per embeddings request.
    """

    def __init__(self, inner: Llm, limiter: "Optional[RateLimiter]" = None,
                 retry: "Optional[RetryPolicy]" = None, *,
                 usage: Optional[UsageTracker] = None,
                 cache: "Optional[ResponseCache]" = None,
                 observers: Sequence[Observer] = (),
                 embeddings: Optional[Callable[[], Llm]] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        if limiter is None:
            from ..rate_limiter._registry import get_global_rate_limiter

            limiter = get_global_rate_limiter()
        self.inner = inner
        self.limiter = limiter
        self.retry = retry
        self.name = inner.name
        self.usage_tracker = usage if usage is not None else UsageTracker()
        self.response_cache = cache
        # The HTTP providers carry their ModelConfig: it names the model for usage and
        # pricing, and scopes cache keys to one endpoint.
        model_config = getattr(inner, "config", None)
        self._model_config = model_config if isinstance(model_config, ModelConfig) else None
        self._model_name = self._model_config.model_name if self._model_config else inner.name
        self._configured_max_tokens = getattr(model_config, "max_tokens", None)  # for the TPM weight
        retry_config = getattr(retry, "config", None)
        retry_config = retry_config if isinstance(retry_config, RetryConfig) else RetryConfig()
        self._max_pause = retry_config.max_retry_after_seconds
        self._max_attempts = retry_config.max_attempts if retry is not None else 1
        self.observers: Tuple[Observer, ...] = tuple(observers)
        self.batch_size = batch_size
        self._build_embedder = embeddings
        self._embedder: Optional[Llm] = None if embeddings is not None else inner
        self._embedder_lock = threading.Lock()
        # Set by close(): calls queued for a limiter slot end at once (cancel_on), new
        # calls are refused, calls in flight finish.
        self._closing = threading.Event()

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise ClientClosedError(f"the client for {self.name} is closed: create a new client")

    def send(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatResult:
        """:meth:`~cowork_llm.llm.Llm.chat` once a limiter slot is free, retrying per the
        policy.

        With a response cache, an identical earlier request (same endpoint, model,
        messages and every option that changes the answer) is answered from it, without
        a slot or a request, as a result with ``cached=True`` (``parsed`` again from its
        content); ``cache=False`` skips the lookup and the store for this call. Only
        answers are stored, never errors.

        Raises:
            ValueError: an option the provider has no place for, before any slot or request.
            ClientClosedError: the client was closed before or while this call waited
                for a slot (nothing was sent).
            LimiterAcquireError: no slot within ``acquire_timeout_seconds``.
            LlmApiError: the last attempt's error, with ``attempts`` set.
        """
        self._check_open()
        record = new_record(self, messages, options, stream=False)
        began = time.monotonic()
        key = None
        try:
            if options.cache and self.response_cache is not None:
                key = self._cache_key(messages, options)
                hit = self.response_cache.get(key)
                if hit is not None:
                    # Nothing was sent now (a MemoryCache keeps the original call's timing).
                    hit = replace(with_parsed(hit, options.response_format), started_at=None,
                                  waited_seconds=0.0)
                    for observation in record.observations:
                        observation.cache_hit()
                    count_success(self.usage_tracker, hit, record, time.monotonic() - began)
                    record.ended(hit)
                    return hit
            result = self._call(messages, options, record)
        except BaseException as error:
            if isinstance(error, LlmError):
                count_failure(self.usage_tracker, self._model_name, record, time.monotonic() - began, error)
                log_failure(self.name, error, record)
            record.ended(None, error)
            raise
        result = replace(result, started_at=record.started_at, waited_seconds=record.waited_seconds)
        if key is not None and self.response_cache is not None:
            self.response_cache.put(key, result)
        count_success(self.usage_tracker, result, record, time.monotonic() - began)
        record.ended(result)
        return result

    def start_observations(self, operation: str, model_config: Any, model_name: str,
                           options: Dict[str, Any], messages: Sequence[Any] = ()) -> List[Any]:
        """The observers' views of a call other than chat (``embeddings``, ``execute_tool``)
        of ``model_config`` (an HTTP provider's ModelConfig, else None) — empty when
        nobody observes. Never raises."""
        return observations_of(self, operation, model_config, model_name, options, messages)

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None,
              cache: bool = True) -> EmbeddingResult:
        """The embedding of each text, in input order. The texts go in requests of at
        most ``batch_size``; each request takes its own limiter slot (weighing its texts'
        characters / 4 against ``tokens_per_minute``) and is retried per the policy.
        With a response cache, each text already embedded (same endpoint, model and
        dimensions) comes from it and only the others are sent; ``cache=False`` skips it.

        Raises:
            ValueError: bad texts or dimensions, before any slot or request.
            ConfigError: no embeddings model is configured, or its provider (Anthropic)
                has none.
            ClientClosedError: the client was closed before or while this call waited.
            LimiterAcquireError: no slot within ``acquire_timeout_seconds``.
            LlmApiError: the failed request's last error, with ``attempts`` set.
        """
        self._check_open()
        return embed_in_batches(self, texts, dimensions, cache, self.batch_size)

    def embedder(self) -> Llm:
        """The Llm that answers :meth:`embed`, built on first use.

        Raises:
            ConfigError: no embeddings model is configured (tried again next time).
        """
        with self._embedder_lock:
            if self._embedder is None:
                assert self._build_embedder is not None
                self._embedder = self._build_embedder()
            return self._embedder

    def usage(self) -> UsageSnapshot:
        """The totals of every call so far (requests, failures, retries, tokens, limiter
        waits, cost), per model and overall."""
        return self.usage_tracker.snapshot()

    def health(self, *, timeout: float = 5.0) -> "HealthStatus":
        """The provider's health check (``GET {base_url}/models`` with the key the next
        request would use): no completion quota and no limiter slot.

        Raises:
            NotImplementedError: the wrapped Llm has no health check (e.g. a MockLlm).
        """
        return self.inner.health(timeout=timeout)

    def _cache_key(self, messages: List[Dict[str, Any]], options: ChatOptions) -> str:
        """The cache key: every option that changes the answer, as the provider will
        send it (a call's None means the configured default). Never includes the key."""
        from ..cache.base import cache_key  # loaded already: whoever built the cache imported it

        model = self._model_config
        if model is None:  # not an HTTP provider: scope by its class and name
            return cache_key(type(self.inner).__name__, "", self.inner.name, messages,
                             options.cache_material())
        material = options.with_defaults(model).cache_material()
        return cache_key(model.provider, model.base_url, model.model_name, messages, material)

    def send_stream(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatStream:
        """:meth:`~cowork_llm.llm.Llm.stream`: the answer in pieces as they arrive, as a
        :class:`ChatStream` (an iterator and a context manager). Each attempt takes a
        limiter slot; attempts are retried only until the first piece arrives; the slot
        is held until the stream is exhausted or closed (``with``, ``close()``, or the
        stream being dropped). Streams are never cached.

        Raises:
            ValueError: an option the provider has no place for, before any slot or request.
            LimiterAcquireError: no slot within ``acquire_timeout_seconds``.
            LlmApiError: the last attempt's error before the first piece, with
                ``attempts`` set; iterating raises the mapped error of a failure mid-stream.
            ClientClosedError: the client was closed before or while this call waited.
        """
        self._check_open()
        record = new_record(self, messages, options, stream=True)
        try:
            return open_limited_stream(self, messages, options, record)
        except BaseException as error:
            if isinstance(error, LlmError):
                log_failure(self.name, error, record)
            record.ended(None, error)
            raise

    def _call(self, messages: List[Dict[str, Any]], options: ChatOptions,
              record: CallRecord) -> ChatResult:
        """The retry loop around :meth:`_attempt`."""
        return with_retries(self, lambda: resending_once(
            lambda: self._attempt(messages, options, record), record), record)

    @staticmethod
    def resending_once(attempt: Callable[[], T], record: CallRecord) -> T:
        """``attempt()``, made once more (a new slot: through the limiter, counted as a
        retry) when the provider refused the token-limit field and now knows the right
        one (:class:`~cowork_llm.errors.TokenFieldRejectedError`). Whatever the retry
        policy says: the request was never wrong, only its field name."""
        return resending_once(attempt, record)

    def _attempt(self, messages: List[Dict[str, Any]], options: ChatOptions,
                 record: CallRecord) -> ChatResult:
        """One request inside one limiter slot, held until the answer has been read."""
        return chat_attempt(self, messages, options, record)

    def limits(self) -> LimitsSnapshot:
        """A frozen snapshot of what the limiter knows: the configured limits and, per
        dimension, what was learned from the provider's rate-limit headers and when.
        Raises LimiterBackendError when a shared limiter store fails."""
        return self.limiter.limits()

    def close(self) -> None:
        """Close the client: calls waiting for a limiter slot end with ClientClosedError
        (within ``CANCEL_CHECK_SECONDS``, nothing sent), later calls raise it at once,
        calls in flight finish (a retry they would make is refused); then the inner
        client (its connections) and the response cache are closed. The limiter is
        shared and stays open. Safe to call twice."""
        if not self._closing.is_set():
            self._closing.set()
            self.inner.close()
            with self._embedder_lock:
                if self._embedder is not None and self._embedder is not self.inner:
                    self._embedder.close()
            if self.response_cache is not None:
                self.response_cache.close()

    def __repr__(self) -> str:
        return f"<RateLimitedLlm {self.name} limiter={self.limiter.config.key!r}>"
