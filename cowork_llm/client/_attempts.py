"""The call path of :class:`~cowork_llm.client.RateLimitedLlm`: the retry loop, and each
attempt inside its own limiter slot.

Chat, stream (:mod:`._stream`) and embeddings (:mod:`._embed`) share the loop
(:func:`with_retries`, ended early by ``close()``), the weight an attempt asks the
limiter for (:func:`estimated_tokens`, :func:`demand`) and the pause a 429's Retry-After
asks of the whole limiter (:func:`pause_for`); :func:`chat_attempt` is one chat request.
"""

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, TypeVar

from ..errors import (
    AcquireCancelled,
    ClientClosedError,
    LlmApiError,
    QuotaExceededError,
    RateLimitError,
    TokenFieldRejectedError,
)
from ..rate_limiter._cancel import cancel_on
from ..rate_limiter._provider_view import demand_for, used_by
from ..rate_limiter._rates import DEFAULT_COMPLETION_TOKENS, estimate_request_tokens
from ..request._options import ChatOptions
from ..results import ChatResult
from ._accounting import CallRecord

if TYPE_CHECKING:
    from ._rate_limited import RateLimitedLlm

__all__ = ["with_retries", "resending_once", "chat_attempt", "estimated_tokens", "demand", "pause_for"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def with_retries(client: "RateLimitedLlm", attempt: Callable[[], T], record: CallRecord) -> T:
    """``attempt()`` under ``client.retry`` (once when there is none), each retry counted
    in ``record``; the prompt is hashed only if a retry is logged.

    Raises:
        ClientClosedError: ``client`` was closed while an attempt waited for a slot.
        Exception: what the last attempt raised.
    """
    try:
        with cancel_on(client._closing):  # close() ends this call's waits for a slot
            if client.retry is None:
                return attempt()
            return client.retry.call(attempt, model=client.name, prompt_hash=lambda: record.prompt_hash,
                                     on_retry=record.count_retry)
    except AcquireCancelled:
        if not client._closing.is_set():
            raise  # an enclosing cancel_on scope of the caller's own
        raise ClientClosedError(f"the client for {client.name} was closed while this call waited for "
                                "a limiter slot; nothing was sent") from None


def resending_once(attempt: Callable[[], T], record: CallRecord) -> T:
    """``attempt()``, made once more (a new slot: through the limiter, counted as a
    retry) when the provider refused the token-limit field and now knows the right
    one (:class:`~cowork_llm.errors.TokenFieldRejectedError`). Whatever the retry
    policy says: the request was never wrong, only its field name. Raises what the
    last ``attempt()`` raised."""
    try:
        return attempt()
    except TokenFieldRejectedError as error:
        record.count_retry(error, 0.0)
        return attempt()


def chat_attempt(client: "RateLimitedLlm", messages: List[Dict[str, Any]], options: ChatOptions,
                 record: CallRecord) -> ChatResult:
    """One chat request inside one limiter slot, held until the answer has been read.
    Raises what the slot or the request raised (the observers told first)."""
    record.attempts += 1
    try:
        return _chat_in_slot(client, messages, options, record)
    except BaseException as error:
        record.attempt_failed(error)
        raise


def _chat_in_slot(client: "RateLimitedLlm", messages: List[Dict[str, Any]], options: ChatOptions,
                  record: CallRecord) -> ChatResult:
    with client.limiter.slot(tokens=estimated_tokens(client, messages, options),
                             demand=demand(client, messages, options)) as slot:
        record.slot_granted(slot.waited_seconds, slot.queue_position)
        record.started_at = time.time()
        if logger.isEnabledFor(logging.DEBUG):  # the hash is only worth it when shown
            logger.debug("%s: slot after %.3fs (prompt=%s, attempt %d)",
                         client.name, slot.waited_seconds, record.prompt_hash, record.attempts)
        started = time.monotonic()
        try:
            result = client.inner.send(messages, options)
        except LlmApiError as error:
            # Learn what the error's headers say, then (a 429) pause, both while
            # still holding the slot: the next waiter must not start a request
            # inside the window the provider asked us to leave empty.
            client.limiter.observe(slot, error.rate_limits, refused=error.status_code == 429)
            if isinstance(error, RateLimitError):
                pause_for(client, error)
            raise
        else:
            client.limiter.observe(slot, result.rate_limits, used_by(result.usage))
            return result
        finally:
            elapsed = time.monotonic() - started
            record.request_seconds += elapsed
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s: request took %.3fs (prompt=%s)",
                             client.name, elapsed, record.prompt_hash)


def estimated_tokens(client: "RateLimitedLlm", messages: List[Dict[str, Any]],
                     options: ChatOptions) -> int:
    """What a request weighs against ``tokens_per_minute`` (0 when no token limit):
    see :func:`~cowork_llm.rate_limiter._rates.estimate_request_tokens`; the token
    limit is the call's max_tokens, else the model config's, else the default."""
    if client.limiter.config.tokens_per_minute is None:
        return 0
    max_tokens = options.max_tokens if options.max_tokens is not None else client._configured_max_tokens
    return estimate_request_tokens(messages, max_tokens, options.tools)


def demand(client: "RateLimitedLlm", messages: List[Dict[str, Any]],
           options: ChatOptions) -> Optional[Dict[str, float]]:
    """What a request takes from the provider's learned budgets (None when the
    limiter is not adaptive): the prompt estimate (as for ``tokens_per_minute``) and
    the max_tokens it may produce (the call's, the model config's, else the
    documented default); tokens = both, an upper bound of what it can use."""
    if not client.limiter.config.adaptive:
        return None
    max_tokens = options.max_tokens if options.max_tokens is not None else client._configured_max_tokens
    return demand_for(estimate_request_tokens(messages, 0),
                      DEFAULT_COMPLETION_TOKENS if max_tokens is None else max_tokens)


def pause_for(client: "RateLimitedLlm", error: RateLimitError) -> None:
    """Pause ``client``'s whole limiter for the Retry-After of a 429 (called while the
    slot is still held); not for an exhausted quota, nor for longer than
    ``max_retry_after_seconds`` (the retry policy then fails at once)."""
    retry_after = error.retry_after
    if retry_after is None or retry_after <= 0 or isinstance(error, QuotaExceededError):
        return  # an exhausted quota is not a matter of waiting
    if retry_after > client._max_pause:
        return  # the retry policy fails at once; holding everyone would only delay that
    client.limiter.pause(retry_after)
