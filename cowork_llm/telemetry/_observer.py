"""The observer interface: what a client tells whoever watches its calls.

:class:`~cowork_llm.client.RateLimitedLlm` calls :meth:`Observer.start_call` once per
call and reports the call's life (limiter slots, failed attempts, retries, cache hits,
the end) to the :class:`CallObservation` it returns. OpenTelemetry
(:mod:`._otel`) and the CLI's progress lines are observers; so may any new kind of call
(embeddings, tool runs) be observed, by building a :class:`CallInfo` with its own
``operation`` name.

This module imports nothing optional: a client without observers pays for an empty
tuple check per call and nothing else.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence, Union

if TYPE_CHECKING:
    from ..results import ChatResult, EmbeddingResult

__all__ = ["CallInfo", "CallObservation", "Observer"]


@dataclass(frozen=True)
class CallInfo:
    """What is known about a call before it starts. Never holds the key."""

    operation: str  #: the GenAI operation name: "chat", "embeddings", "execute_tool", ...
    model: str  #: the model asked for (for execute_tool: the tool's name)
    provider: str = ""  #: "openai", "anthropic", or "" when not an HTTP provider
    server_address: Optional[str] = None
    server_port: Optional[int] = None
    limiter_key: Optional[str] = None
    #: request options as sent, by their short names (temperature, max_tokens, top_p,
    #: seed, stop, ...); None values mean "not set" and are left out.
    options: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False
    #: the checked messages: read only by observers that the user let capture content.
    messages: Sequence[Mapping[str, Any]] = field(default=(), repr=False)


class CallObservation:
    """One call as an observer follows it. Every method here does nothing; observers
    override what they need. Methods must not raise: a failing observer would fail the
    call (the client does not guard them, to stay cheap)."""

    __slots__ = ()

    def slot_granted(self, attempt: int, waited_seconds: float, queue_position: int) -> None:
        """Attempt ``attempt`` (1, 2, ...) got its limiter slot after ``waited_seconds``,
        with ``queue_position`` callers ahead of it when it arrived."""

    def attempt_failed(self, attempt: int, error: BaseException) -> None:
        """Attempt ``attempt`` failed with ``error`` (it may be retried)."""

    def retrying(self, attempt: int, error: BaseException, wait_seconds: float,
                 max_attempts: int) -> None:
        """Attempt ``attempt`` failed with ``error``; the next starts after ``wait_seconds``."""

    def cache_hit(self) -> None:
        """The response cache answered: no slot, no request."""

    def succeeded(self, result: "Union[ChatResult, EmbeddingResult]") -> None:
        """The call ended with ``result`` (for a stream: when it ended; for embeddings an
        EmbeddingResult)."""

    def failed(self, error: BaseException) -> None:
        """The call ended with ``error``."""


class Observer:
    """Watches calls. :meth:`start_call` returns a :class:`CallObservation` for the call
    (None to skip it). Must be safe to call from many threads at once."""

    def start_call(self, call: CallInfo) -> Optional[CallObservation]:
        """A call is starting. Returns None here: nothing to observe."""
        return None


def start_observations(observers: Sequence[Observer], call: CallInfo) -> List[CallObservation]:
    """Each observer's observation of ``call`` (those that returned one)."""
    observations = []
    for observer in observers:
        observation = observer.start_call(call)
        if observation is not None:
            observations.append(observation)
    return observations
