"""Streaming through :class:`~cowork_llm.client.RateLimitedLlm`: a limiter slot
per attempt, retries only until the first piece, and the slot held until the stream ends.

An attempt takes a slot, opens the inner stream and reads its first piece. Everything
that can fail before the answer starts (the connection, an error status, an error event
or a failure before any text) fails the attempt, which gives the slot back and may be
retried. Once a piece has arrived the answer is the consumer's: a failure after that is
raised from iteration and never retried (pieces already shown cannot be taken back).

The slot's release is registered on the returned :class:`ChatStream`'s ``on_close``, so
it runs exactly once however the consumer leaves: exhausted, ``with`` block, ``close()``,
a failure mid-stream, or the stream being garbage-collected.
"""

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

from ..errors import LlmApiError, LlmError, RateLimitError
from ..llm import Llm
from ..rate_limiter._provider_view import used_by
from ..request._options import ChatOptions
from ..results import ChatResult
from ..streaming import ChatStream, StreamState
from ._accounting import count_failure, count_success, log_failure
from ._attempts import demand, estimated_tokens, pause_for, resending_once, with_retries

if TYPE_CHECKING:
    from ..rate_limiter._slot import Slot
    from ._accounting import CallRecord
    from ._rate_limited import RateLimitedLlm

__all__ = ["open_limited_stream"]

logger = logging.getLogger(__name__)

_NOTHING = object()  # the inner stream ended before its first piece


@dataclass
class _Outcome:
    """How the relay ended; read by the on_close callback. Holds no reference to the
    outer stream, so dropping the stream still frees it at once."""

    finished: bool = False
    error: Optional[BaseException] = None


def open_limited_stream(client: "RateLimitedLlm", messages: List[Dict[str, Any]],
                        options: ChatOptions, record: "CallRecord") -> ChatStream:
    """Open a stream of ``client.inner`` inside a slot of ``client.limiter``, retried per
    ``client.retry`` until its first piece arrives. ``messages`` and ``options`` are
    already checked.

    Raises:
        LimiterAcquireError: no slot in time.
        LlmApiError: the last attempt's error before the first piece (``attempts`` set).
    """

    began = time.monotonic()
    try:
        return with_retries(client, lambda: resending_once(
            lambda: _attempt(client, messages, options, record, began), record), record)
    except LlmError as error:
        _count_failure(client, record, began, error)
        raise


def _attempt(client: "RateLimitedLlm", messages: List[Dict[str, Any]], options: ChatOptions,
             record: "CallRecord", began: float) -> ChatStream:
    """One attempt: a slot, the inner stream, its first piece. On any failure the inner
    stream is closed and the slot given back before the error propagates."""
    record.attempts += 1
    try:
        slot = client.limiter.acquire(tokens=estimated_tokens(client, messages, options),  # as chat weighs
                                      demand=demand(client, messages, options))
    except BaseException as error:
        record.attempt_failed(error)
        raise
    record.slot_granted(slot.waited_seconds, slot.queue_position)
    started = time.monotonic()
    inner: Any = None
    try:
        inner = client.inner.send_stream(messages, options)
        pieces = iter(inner)
        first = next(pieces, _NOTHING)
    except BaseException as error:
        _close_quietly(inner)
        if isinstance(error, LlmApiError):  # as chat does, while still holding the slot
            client.limiter.observe(slot, error.rate_limits, refused=error.status_code == 429)
        if isinstance(error, RateLimitError):
            pause_for(client, error)  # as chat does: pause while still holding the slot
        slot.release()
        record.request_seconds += time.monotonic() - started
        record.attempt_failed(error)
        raise
    if logger.isEnabledFor(logging.DEBUG):  # the prompt hash is only worth it when shown
        logger.debug("%s: stream open after %.3fs (prompt=%s, attempt %d)",
                     client.name, time.monotonic() - started, record.prompt_hash, record.attempts)
    state = StreamState(model=_model_of(inner, client.inner), request_id=getattr(inner, "request_id", None),
                        response_format=options.response_format)
    outcome = _Outcome()
    stream = ChatStream(_relay(first, pieces, inner, state, outcome), state, response=_Closer(inner))
    stream.on_close.append(_ender(client, slot, started, began, record, state, outcome,
                                  _Limits(getattr(inner, "rate_limits", None), time.monotonic())))
    return stream


def _relay(first: object, pieces: Iterator[str], inner: Any, state: StreamState,
           outcome: _Outcome) -> Iterator[str]:
    """The first piece, then the rest; at the end, what the inner stream learnt (usage
    from the final event, finish reason) is copied into ``state``."""
    try:
        if first is not _NOTHING:
            yield first  # type: ignore[misc]
            yield from pieces
    except GeneratorExit:
        raise  # closed early: neither finished nor failed
    except BaseException as error:
        outcome.error = error
        raise
    for name in ("usage", "finish_reason", "model", "request_id", "tool_calls"):
        value = getattr(inner, name, None)
        if value is not None:
            setattr(state, name, value)
    outcome.finished = True


class _Closer:
    """Lets ChatStream close the inner stream as its "response" (a generator or a
    ChatStream alike)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def close(self) -> None:
        _close_quietly(self._inner)


@dataclass
class _Limits:
    """The inner stream's rate-limit report, kept without keeping the stream alive."""

    rate_limits: Any
    received_at: float  #: time.monotonic() when the stream opened (its headers had arrived)


def _ender(client: "RateLimitedLlm", slot: "Slot", started: float, began: float,
           record: "CallRecord", state: StreamState, outcome: _Outcome,
           inner_limits: _Limits) -> Callable[[], None]:
    """The on_close callback: give the slot back, then log and count the call."""

    def end() -> None:
        try:  # what the headers said, and the real usage when the stream finished
            client.limiter.observe(slot, inner_limits.rate_limits,
                                   used_by(state.usage) if outcome.finished else None,
                                   reported_age=time.monotonic() - inner_limits.received_at)
        finally:
            slot.release()
        record.request_seconds += time.monotonic() - started
        if outcome.error is not None:
            if isinstance(outcome.error, LlmError):
                log_failure(client.name, outcome.error, record)
            _count_failure(client, record, began, outcome.error)
            record.ended(None, outcome.error)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s stream %s (prompt=%s)", client.name,
                         "finished" if outcome.finished else "closed early", record.prompt_hash)
        # Closed early counts as an answer too: the request used quota, its tokens unknown.
        result = ChatResult(content="", model=state.model, finish_reason=state.finish_reason,
                            usage=state.usage if outcome.finished else None,
                            request_id=state.request_id)
        count_success(client.usage_tracker, result, record, time.monotonic() - began)
        record.ended(result)

    return end


def _count_failure(client: "RateLimitedLlm", record: "CallRecord", began: float,
                   error: BaseException) -> None:
    count_failure(client.usage_tracker, client._model_name, record, time.monotonic() - began, error)


def _model_of(inner_stream: Any, inner_llm: Llm) -> str:
    model = getattr(inner_stream, "model", None) or getattr(inner_llm, "model", None)
    return model if isinstance(model, str) and model else inner_llm.name


def _close_quietly(inner: Any) -> None:
    close = getattr(inner, "close", None)
    if close is None:
        return
    try:
        close()
    except ValueError:
        pass  # "generator already executing": being read in another thread, which will stop
    except Exception:  # nothing more to release; the slot must still be given back
        logger.debug("closing an inner stream failed", exc_info=True)
