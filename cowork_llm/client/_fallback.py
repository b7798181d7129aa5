"""FallbackLlm: a primary model and ``[[llm.fallback]]`` models, tried in turn.

Each model of the chain is a complete client of its own (normally a
:class:`~cowork_llm.client.RateLimitedLlm`): its own provider, limiter key and
retry budget. The chain moves to the next model only when one has *finally* failed,
after its own retries, with an error another model might not have:

| Final error of one model                                  | Next model tried? |
|-----------------------------------------------------------|-------------------|
| ServerError, ApiConnectionError, ApiTimeoutError          | yes               |
| RateLimitError (retries exhausted, Retry-After too long)  | yes               |
| QuotaExceededError (the account is out of credit) [1]     | yes               |
| AuthenticationError, NotFoundError (that model's key/URL) | yes               |
| InvalidResponseError (a 2xx we cannot use)                | yes               |
| BadRequestError (400/422: wrong everywhere)               | no                |
| ValueError (bad messages/options, before any request)     | no                |
| LimiterAcquireError (no slot in time) [2]                 | no                |

[1] Another account or provider may well have credit: an exhausted primary is the
    clearest reason to have a fallback.
[2] A local capacity limit, not a failure of the model; failing over would quietly move
    load to a (perhaps paid) fallback.

A stream fails over only before its first piece: once text has reached the caller,
a failure is raised from iteration as it is.
"""

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..config._sections import LlmConfig, ModelConfig, RateLimitConfig
from ..errors import BadRequestError, LlmApiError, LlmError
from ..limits import LimitsSnapshot
from ..llm import Llm
from ..providers import build_provider
from ..rate_limiter import init_global_rate_limiter
from ..request._options import ChatOptions
from ..results import ChatResult, EmbeddingResult
from ..retry import RetryPolicy, describe_error
from ..streaming import ChatStream
from ..usage import UsageSnapshot
from ._rate_limited import RateLimitedLlm

if TYPE_CHECKING:
    from ..health import HealthStatus

__all__ = ["FallbackLlm", "fails_over", "fallback_limit_key", "build_fallback_chain"]

logger = logging.getLogger(__name__)


def fails_over(error: BaseException) -> bool:
    """True when ``error``, the final error of one model, is a reason to try the next:
    any API error except a bad request (see the module's table)."""
    return isinstance(error, LlmApiError) and not isinstance(error, BadRequestError)


class FallbackLlm(Llm):
    """Answers with the first model of ``chain`` that succeeds. Safe to share between
    threads (it keeps no state of its own between calls); :meth:`close` closes every
    model. The result's ``model`` says which model answered.

    Raises (at construction):
        ValueError: ``chain`` is empty.
    """

    def __init__(self, chain: Sequence[Llm]) -> None:
        if not chain:
            raise ValueError("FallbackLlm needs at least one model")
        self.chain: Tuple[Llm, ...] = tuple(chain)
        self.primary = self.chain[0]
        self.name = self.primary.name
        self._closed = False

    def send(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatResult:
        """Ask each model in turn until one answers, with the same options (``cache=False``
        included).

        Raises:
            ValueError: an option a model has no place for, before that model's request.
            LimiterAcquireError: a model's limiter had no slot in time (not failed over).
            LlmApiError: a BadRequestError from any model at once, otherwise the last
                model's final error.
        """
        result: ChatResult = self._first_success("send", messages, options)
        return result

    def send_stream(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatStream:
        """The first model's stream that opens and yields its first piece (each model's
        stream reads its first piece before returning, so a model that cannot start
        is failed over; a failure after that is raised from iteration).

        Raises: as :meth:`send`, for failures before the first piece.
        """
        stream: ChatStream = self._first_success("send_stream", messages, options)
        return stream

    def _first_success(self, method: str, messages: List[Any], options: ChatOptions) -> Any:
        last = len(self.chain) - 1
        for index, llm in enumerate(self.chain):
            try:
                return getattr(llm, method)(messages, options)
            except LlmError as error:
                if index == last or not fails_over(error):
                    raise
                # Model names and the error class only: never a key, never the prompt.
                logger.warning("%s failed (%s); failing over to %s (fallback %d of %d)",
                               llm.name, describe_error(error), self.chain[index + 1].name,
                               index + 1, last)
        raise AssertionError("unreachable: the last model either answers or raises")

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None,
              **options: Any) -> EmbeddingResult:
        """The primary's :meth:`~cowork_llm.llm.Llm.embed` (``[llm.embeddings]`` is one
        model for the whole chain: vectors of different models cannot be mixed, so there
        is nothing to fail over to). Raises what it raises."""
        result: EmbeddingResult = self.primary.embed(texts, dimensions=dimensions, **options)
        return result

    def usage(self) -> UsageSnapshot:
        """The usage totals, per model. The models of a chain built by
        :func:`~cowork_llm.create_llm_client` share one tracker, so this is
        every model's usage.

        Raises:
            NotImplementedError: the primary keeps no usage totals.
        """
        return self.primary.usage()

    def limits(self) -> LimitsSnapshot:
        """The primary model's limiter (see :meth:`Llm.limits`). Raises what it raises."""
        return self.primary.limits()

    def health(self, *, timeout: float = 5.0) -> "HealthStatus":
        """The primary model's health check (see :meth:`Llm.health`)."""
        return self.primary.health(timeout=timeout)

    def close(self) -> None:
        """Close every model of the chain. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for llm in self.chain:
            llm.close()

    def __repr__(self) -> str:
        return f"<FallbackLlm {' -> '.join(llm.name for llm in self.chain)}>"


# --- building the chain from the configuration --------------------------------------------------


def fallback_limit_key(rate_limit: RateLimitConfig, index: int, model: ModelConfig) -> str:
    """The limiter key of fallback ``index``: ``"<key>:fallback<index>:<provider>:<host>"``.
    Each fallback gets a quota of its own (it is another account or provider), with the
    primary's limits; the primary's key in it keeps two configurations apart."""
    return f"{rate_limit.key}:fallback{index}:{model.provider}:{model.host}"


def build_fallback_chain(config: LlmConfig, primary: RateLimitedLlm) -> Llm:
    """``primary`` alone when ``config.fallback`` is empty; otherwise a FallbackLlm over
    ``primary`` and one RateLimitedLlm per ``[[llm.fallback]]`` entry, each with its own
    provider, limiter (:func:`fallback_limit_key`, the primary's limits) and retry
    policy (the primary's settings), all counting usage in ``primary``'s tracker.
    Fallbacks have no response cache: the primary's cache is consulted first anyway.

    Raises:
        ConfigError: an entry's provider cannot be built or its secret source failed
            (the message names ``llm.fallback[i]``); ``primary`` and the models built so
            far are closed.
    """
    if not config.fallback:
        return primary
    chain: List[Llm] = [primary]
    try:
        for index, model in enumerate(config.fallback):
            provider = build_provider(model, section=f"llm.fallback[{index}]")
            rate_limit = dataclasses.replace(config.rate_limit,
                                             key=fallback_limit_key(config.rate_limit, index, model))
            chain.append(RateLimitedLlm(provider, init_global_rate_limiter(rate_limit),
                                        RetryPolicy(config.retry), usage=primary.usage_tracker,
                                        observers=primary.observers))
            logger.info("LLM fallback %d: provider=%s model=%s host=%s limiter key=%s",
                        index, model.provider, model.model_name, model.host, rate_limit.key)
    except BaseException:
        for built in chain:  # the primary too: the caller gets no client to close
            built.close()
        raise
    return FallbackLlm(chain)
