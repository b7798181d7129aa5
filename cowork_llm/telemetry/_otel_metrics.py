"""The instruments: GenAI client metrics and the limiter's own, on one meter.

The queue depth and slots in flight are observable gauges read from every live
:class:`~cowork_llm.rate_limiter.RateLimiter` when the SDK collects, so the limiter's hot
path records nothing for them.
"""

from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import _semconv as sc

if TYPE_CHECKING:
    from ..results import Usage

__all__ = ["Instruments"]


class Instruments:
    """The histograms and gauges of one meter. Safe to share between threads."""

    def __init__(self, meter: Meter) -> None:
        self.token_usage = meter.create_histogram(
            sc.TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_BUCKETS))
        self.duration = meter.create_histogram(
            sc.OPERATION_DURATION, unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS))
        self.limiter_wait = meter.create_histogram(
            sc.LIMITER_WAIT_METRIC, unit="s",
            description="Time one attempt waited for a rate-limiter slot",
            explicit_bucket_boundaries_advisory=list(sc.LIMITER_WAIT_BUCKETS))
        meter.create_observable_gauge(
            sc.QUEUE_DEPTH_METRIC, callbacks=[_limiter_gauge("queued")], unit="{request}",
            description="Callers waiting for a rate-limiter slot")
        meter.create_observable_gauge(
            sc.IN_FLIGHT_METRIC, callbacks=[_limiter_gauge("in_flight")], unit="{request}",
            description="Rate-limiter slots held by requests in flight")
        meter.create_observable_gauge(
            sc.REMAINING_METRIC, callbacks=[_learned_gauge("level")], unit="1",
            description="What the provider has left, as the limiter models it from the "
                        "rate-limit headers (requests or tokens, per dimension)")
        meter.create_observable_gauge(
            sc.LEARNED_LIMIT_METRIC, callbacks=[_learned_gauge("limit")], unit="1",
            description="The provider's limit per dimension, learned from its rate-limit headers")

    def record_call(self, attributes: Dict[str, Any], seconds: float,
                    usage: "Optional[Usage]") -> None:
        """One finished call: its duration, and its tokens when the provider counted them.
        ``attributes`` holds error.type for a failure."""
        self.duration.record(seconds, attributes)
        if usage is not None:
            self.token_usage.record(usage.prompt_tokens, {**attributes, sc.TOKEN_TYPE: "input"})
            if attributes.get(sc.OPERATION_NAME) != "embeddings":  # embeddings have no output tokens
                self.token_usage.record(usage.completion_tokens, {**attributes, sc.TOKEN_TYPE: "output"})


def _learned_gauge(attribute: str) -> Any:
    """Each live limiter's learned ``level`` or ``limit`` per dimension (requests, tokens,
    ...). A limiter whose shared store fails is skipped for this collection."""
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        from ..rate_limiter._gate import _live_limiters

        observed = []
        for limiter in list(_live_limiters):
            if limiter.closed or not hasattr(limiter, "limits"):
                continue
            try:
                learned = limiter.limits().learned
            except Exception:  # noqa: BLE001 - a collection must not fail for one store
                continue
            for name, value in learned.items():
                number = getattr(value, attribute, None)
                if number is not None:
                    observed.append(Observation(number, {sc.LIMITER_KEY: limiter.config.key,
                                                         sc.LIMITER_DIMENSION: name}))
        return observed

    return observe


def _limiter_gauge(attribute: str) -> Any:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        from ..rate_limiter._gate import _live_limiters  # loaded already by any client

        return [Observation(getattr(limiter, attribute), {sc.LIMITER_KEY: limiter.config.key})
                for limiter in list(_live_limiters) if not limiter.closed]

    return observe
