"""What one call through :class:`~cowork_llm.client.RateLimitedLlm` cost, and how
it is counted and logged once it ends: the :class:`CallRecord` its attempts fill in, the
:class:`~cowork_llm.usage.UsageTracker` entry, and the call's one log line (the prompt
only as its hash, never the key). Shared by ``chat`` and ``stream``.
"""

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from ..errors import AcquireCancelled, LlmApiError, LlmError
from ..llm import prompt_hash
from ..results import ChatResult, Usage
from ..usage import UsageTracker

if TYPE_CHECKING:
    from ..telemetry import CallObservation

__all__ = ["CallRecord", "count_success", "count_failure", "log_failure"]

# The client's logger: these lines were always logged under the public module's name,
# which users (and tests) filter on.
logger = logging.getLogger(__name__)


@dataclass
class CallRecord:
    """What one :meth:`RateLimitedLlm.chat` call cost, attempt by attempt."""

    messages: List[Dict[str, str]] = field(repr=False)  #: the checked messages
    attempts: int = 0
    retries: int = 0  #: attempts the retry policy started again
    waited_seconds: float = 0.0  #: for limiter slots, over all attempts
    request_seconds: float = 0.0  #: inside the slot, over all attempts
    started_at: Optional[float] = None  #: time.time() when the last attempt's slot was granted
    #: the observers' views of this call (:mod:`cowork_llm.telemetry`); empty: none
    observations: "Sequence[CallObservation]" = ()
    max_attempts: int = 1  #: the retry policy's, for observers' "attempt 2 of 5"
    _prompt_hash: Optional[str] = field(default=None, repr=False)

    @property
    def prompt_hash(self) -> str:
        """:func:`~cowork_llm.llm.prompt_hash` of the messages, computed the first time a
        log line needs it (a JSON dump and a sha256: most calls log nothing)."""
        if self._prompt_hash is None:
            self._prompt_hash = prompt_hash(self.messages)
        return self._prompt_hash

    def count_retry(self, error: BaseException, wait: float) -> None:
        """The retry policy's ``on_retry``: one more attempt was started again."""
        self.retries += 1
        for observation in self.observations:
            observation.retrying(self.attempts, error, wait, self.max_attempts)

    def slot_granted(self, waited_seconds: float, queue_position: int) -> None:
        """The current attempt got its limiter slot: counted, and told to the observers."""
        self.waited_seconds += waited_seconds
        for observation in self.observations:
            observation.slot_granted(self.attempts, waited_seconds, queue_position)

    def attempt_failed(self, error: BaseException) -> None:
        """Tell the observers the current attempt failed (it may be retried)."""
        for observation in self.observations:
            observation.attempt_failed(self.attempts, error)

    def ended(self, result: Any, error: Optional[BaseException] = None) -> None:
        """Tell the observers how the call ended: ``result`` (a ChatResult or an
        EmbeddingResult), or ``error``."""
        for observation in self.observations:
            if error is not None:
                observation.failed(error)
            else:
                observation.succeeded(result)


def count_success(tracker: UsageTracker, result: ChatResult, record: CallRecord,
                  latency: float) -> None:
    """Count a call that returned ``result`` and log its one INFO line."""
    cost = tracker.record_success(result.model, result.usage, latency=latency,
                                  waited=record.waited_seconds, retries=record.retries,
                                  cached=result.cached)
    if not logger.isEnabledFor(logging.INFO):
        return  # the line below costs more than the accounting: build it only when shown
    usage = result.usage
    tokens = f"{usage.prompt_tokens}+{usage.completion_tokens} tokens{_details(usage)}" if usage \
        else "tokens unreported"
    if cost is not None:
        priced = f"cost {cost:.6f}"
    elif tracker.price_for(result.model) is None:
        priced = "unpriced"
    else:
        priced = "cost unknown"
    logger.info("%s%s: %s, latency %.3fs, waited %.3fs, %s, attempts %d, prompt=%s",
                result.model, " (cached)" if result.cached else "", tokens, latency,
                record.waited_seconds, priced, record.attempts, record.prompt_hash)


def _details(usage: Usage) -> str:
    """`` (cached 800, reasoning 120)``: the details the provider reported, for the INFO line."""
    shown = [f"{name} {value}" for name, value in (("cached", usage.cached_prompt_tokens),
                                                   ("cache write", usage.cache_creation_tokens),
                                                   ("reasoning", usage.reasoning_tokens)) if value]
    return f" ({', '.join(shown)})" if shown else ""


def count_failure(tracker: UsageTracker, model: str, record: CallRecord, latency: float,
                  error: BaseException) -> None:
    """Count a call of ``model`` that ended in ``error``; a cancelled wait for a slot
    (AcquireCancelled) was called off, not failed, and is not counted."""
    if isinstance(error, AcquireCancelled):
        return
    tracker.record_failure(model, retries=record.retries, waited=record.waited_seconds,
                           latency=latency)


def log_failure(client_name: str, error: LlmError, record: CallRecord) -> None:
    """Log how the call ended: ERROR for a failure, DEBUG for a cancelled wait (the
    caller called it off: not a failure)."""
    if isinstance(error, AcquireCancelled):
        if logger.isEnabledFor(logging.DEBUG):  # the prompt hash is only worth it when shown
            logger.debug("%s call cancelled while waiting for a limiter slot (attempts=%d, prompt=%s)",
                         client_name, record.attempts, record.prompt_hash)
    elif isinstance(error, LlmApiError):
        logger.error(
            "%s call failed: %s (status=%s, request_id=%s, attempts=%d, prompt=%s)",
            client_name, type(error).__name__, error.status_code, error.request_id,
            error.attempts, record.prompt_hash,
        )
    else:
        logger.error("%s call failed: %s: %s (attempts=%d, prompt=%s)",
                     client_name, type(error).__name__, error, record.attempts, record.prompt_hash)
