"""Token usage and cost, totalled per model and safe to update from many threads.

A :class:`UsageTracker` is told about every finished call (:meth:`~UsageTracker.record_success`
or :meth:`~UsageTracker.record_failure`) and hands out frozen :class:`UsageSnapshot` copies.

What the counters mean:

- ``requests``: calls that finished, successful or not, cache hits included.
- ``failures``: of those, calls that ended in an error.
- ``cached_hits``: of those, calls the response cache answered. A hit used no quota, so it
  adds no tokens and no cost.
- ``retries``: extra HTTP attempts beyond the first, over all calls.
- ``prompt_tokens`` / ``completion_tokens``: as the provider counted them.
- ``cached_prompt_tokens`` (of the prompt tokens, read from the provider's prompt cache),
  ``cache_creation_tokens`` (written to it, Anthropic) and ``reasoning_tokens`` (of the
  completion tokens, spent thinking): the sums of what providers reported; a call whose
  provider did not say adds nothing (its ``Usage`` field is None, never a guessed 0).
- ``unreported_usage``: successful, uncached calls whose provider sent no token counts;
  their tokens (and cost) are missing from the totals.
- ``waited_seconds``: time spent waiting for the rate limiter; ``latency_seconds``: time
  from the start of the call to its end, summed.

Embeddings (``embed()``) are counted apart, per embeddings model, in
:attr:`UsageSnapshot.embeddings`: their requests and prompt tokens never mix with the
chat totals, and :func:`format_usage` gives them a line of their own. Their cost is
``prompt_tokens * input_per_million`` (they produce no completion tokens).

Cost comes only from the configuration (``[llm.pricing."<model>"]``); there is no built-in
price list that silently goes stale. A model without a price has ``cost = None``, never
``0``. The grand total is ``None`` when no model seen so far is priced; when only some are,
it is the sum over the priced ones and ``UsageSnapshot.unpriced_models`` names the others
(``cost_complete`` is then False and :func:`format_usage` says "excluding ...").
"""

import dataclasses
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from .config._sections import ModelPrice
from .results import Usage

__all__ = ["UsageTracker", "UsageSnapshot", "ModelUsage", "call_cost", "format_usage"]

# Provider snapshot suffixes: gpt-4o-2024-08-06, gpt-4-0613, claude-3-5-sonnet-20241022.
# The answering model is often reported under its snapshot name while the price is
# configured under the alias; only such date-like suffixes are stripped, so
# "gpt-4o-mini" never picks up the price of "gpt-4o".
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


def call_cost(price: ModelPrice, usage: Usage) -> float:
    """The cost of one call's tokens at ``price`` (per million tokens). Prompt tokens
    read from the provider's cache cost ``cached_input_per_million`` when it is set (else
    the input price); tokens written to the cache are priced as input (Anthropic charges
    more for them: put the difference in input_per_million if it matters)."""
    cached = min(usage.cached_prompt_tokens or 0, usage.prompt_tokens)
    cached_price = price.input_per_million if price.cached_input_per_million is None \
        else price.cached_input_per_million
    return ((usage.prompt_tokens - cached) * price.input_per_million + cached * cached_price
            + usage.completion_tokens * price.output_per_million) / 1_000_000


@dataclass(frozen=True)
class ModelUsage:
    """The totals of one model (or of all models, in :attr:`UsageSnapshot.total`)."""

    requests: int = 0
    failures: int = 0
    cached_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreported_usage: int = 0
    waited_seconds: float = 0.0
    latency_seconds: float = 0.0
    cost: Optional[float] = None
    cached_prompt_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def http_attempts(self) -> int:
        """Requests that reached the provider: every uncached call once, plus retries."""
        return self.requests - self.cached_hits + self.retries

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class UsageSnapshot:
    """Totals at one moment. ``models`` maps each model name to its :class:`ModelUsage`;
    ``total`` sums them (its ``cost`` is explained in the module docstring)."""

    models: Mapping[str, ModelUsage]
    total: ModelUsage
    unpriced_models: Tuple[str, ...] = ()
    #: ``embed()`` calls per embeddings model (not part of ``models`` or ``total``).
    embeddings: Mapping[str, ModelUsage] = field(default_factory=dict)

    @property
    def embeddings_total(self) -> ModelUsage:
        """:attr:`embeddings` summed over the embeddings models."""
        return _sum(self.embeddings.values())

    @property
    def cost_complete(self) -> bool:
        """True when every model seen is priced (so ``total.cost`` is the whole cost)."""
        return not self.unpriced_models

    def to_dict(self) -> Dict[str, Any]:
        """Plain dicts and lists, ready for ``json.dumps``. Never raises."""
        return {
            "models": {name: usage.to_dict() for name, usage in self.models.items()},
            "total": self.total.to_dict(),
            "unpriced_models": list(self.unpriced_models),
            "cost_complete": self.cost_complete,
            "embeddings": {name: usage.to_dict() for name, usage in self.embeddings.items()},
        }

    def __str__(self) -> str:
        """One line for people (``print(llm.usage())``); see :func:`format_usage`."""
        return format_usage(self)


@dataclass
class _Counters:
    """The mutable twin of ModelUsage; only touched under the tracker's lock."""

    requests: int = 0
    failures: int = 0
    cached_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unreported_usage: int = 0
    waited_seconds: float = 0.0
    latency_seconds: float = 0.0
    cost: float = 0.0
    cached_prompt_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


class UsageTracker:
    """Thread-safe totals per model.

    ``pricing`` maps model names to prices, as ``LlmConfig.pricing`` does. A model is
    looked up by its exact name, then without a date-like snapshot suffix
    (``gpt-4o-2024-08-06`` → ``gpt-4o``).
    """

    def __init__(self, pricing: Optional[Mapping[str, ModelPrice]] = None) -> None:
        self._pricing: Dict[str, ModelPrice] = dict(pricing or {})
        self._lock = threading.Lock()
        self._counters: Dict[str, _Counters] = {}
        self._embedding_counters: Dict[str, _Counters] = {}

    def price_for(self, model: str) -> Optional[ModelPrice]:
        """The configured price of ``model``, or None when it has none."""
        price = self._pricing.get(model)
        if price is None and self._pricing:  # no prices at all: nothing to strip for
            alias = _SNAPSHOT_SUFFIX.sub("", model)
            if alias != model:
                price = self._pricing.get(alias)
        return price

    def record_success(
        self,
        model: str,
        usage: Optional[Usage],
        *,
        latency: float,
        waited: float = 0.0,
        retries: int = 0,
        cached: bool = False,
        embeddings: bool = False,
    ) -> Optional[float]:
        """Count one call that returned an answer (an embeddings request when
        ``embeddings``). Returns what it cost: None when the model has no price or the
        provider reported no usage, 0.0 for a cache hit of a priced model."""
        price = self.price_for(model)
        cost: Optional[float] = None
        if price is not None:
            if cached:
                cost = 0.0
            elif usage is not None:
                cost = call_cost(price, usage)
        with self._lock:
            counters = self._counters_for(model, embeddings)
            counters.requests += 1
            counters.retries += retries
            counters.waited_seconds += waited
            counters.latency_seconds += latency
            if cached:
                counters.cached_hits += 1
            elif usage is None:
                counters.unreported_usage += 1
            else:
                counters.prompt_tokens += usage.prompt_tokens
                counters.completion_tokens += usage.completion_tokens
                counters.cached_prompt_tokens += usage.cached_prompt_tokens or 0
                counters.cache_creation_tokens += usage.cache_creation_tokens or 0
                counters.reasoning_tokens += usage.reasoning_tokens or 0
                counters.cost += cost or 0.0
        return cost

    def record_failure(self, model: str, *, retries: int = 0, waited: float = 0.0,
                       latency: float = 0.0, embeddings: bool = False) -> None:
        """Count one call that ended in an error (after ``retries`` extra attempts)."""
        with self._lock:
            counters = self._counters_for(model, embeddings)
            counters.requests += 1
            counters.failures += 1
            counters.retries += retries
            counters.waited_seconds += waited
            counters.latency_seconds += latency

    def snapshot(self) -> UsageSnapshot:
        """A consistent, frozen copy of the totals."""
        with self._lock:
            copied = {name: dataclasses.replace(c) for name, c in self._counters.items()}
            embedded = {name: dataclasses.replace(c) for name, c in self._embedding_counters.items()}
        unpriced: list = []
        models = self._frozen(copied, unpriced)
        embeddings = self._frozen(embedded, [])  # their line says "cost unknown" itself
        return UsageSnapshot(models=models, total=_sum(models.values()),
                             unpriced_models=tuple(unpriced), embeddings=embeddings)

    def _frozen(self, counters: Dict[str, "_Counters"], unpriced: list) -> Dict[str, ModelUsage]:
        """ModelUsage per model, sorted by name; unpriced names are appended to ``unpriced``."""
        models: Dict[str, ModelUsage] = {}
        for name in sorted(counters):
            values = dataclasses.asdict(counters[name])
            if self.price_for(name) is None:
                values["cost"] = None
                unpriced.append(name)
            models[name] = ModelUsage(**values)
        return models

    def reset(self) -> None:
        """Forget every total (the prices stay)."""
        with self._lock:
            self._counters.clear()
            self._embedding_counters.clear()

    def _counters_for(self, model: str, embeddings: bool = False) -> _Counters:
        table = self._embedding_counters if embeddings else self._counters
        counters = table.get(model)
        if counters is None:
            counters = table[model] = _Counters()
        return counters


def _sum(entries: Any) -> ModelUsage:
    entries = list(entries)
    costs = [e.cost for e in entries if e.cost is not None]
    sums = {f.name: sum(getattr(e, f.name) for e in entries)
            for f in dataclasses.fields(ModelUsage) if f.name != "cost"}
    return ModelUsage(**sums, cost=sum(costs) if costs else None)


def _details(**counts: int) -> str:
    """`` (1,000 cached, 20 written)`` for the counts that are not 0; "" when all are."""
    shown = [f"{count:,} {name}" for name, count in counts.items() if count]
    return f" ({', '.join(shown)})" if shown else ""


def format_usage(snapshot: UsageSnapshot) -> str:
    """One human line for the totals, e.g. ``usage: 3 requests (1 cached, 0 failed,
    2 retries), 1,200 prompt + 340 completion tokens, waited 4.0 s, cost 0.006400``;
    after ``embed()`` calls, a second line ``embeddings: 2 requests (0 cached, 0 failed),
    1,024 tokens, cost 0.000020``."""
    total = snapshot.total
    line = (
        f"usage: {total.requests} request{'s' if total.requests != 1 else ''} "
        f"({total.cached_hits} cached, {total.failures} failed, {total.retries} "
        f"retr{'y' if total.retries == 1 else 'ies'}), "
        f"{total.prompt_tokens:,} prompt"
        f"{_details(cached=total.cached_prompt_tokens, written=total.cache_creation_tokens)}"
        f" + {total.completion_tokens:,} completion{_details(reasoning=total.reasoning_tokens)} tokens"
    )
    if total.unreported_usage:
        line += f" ({total.unreported_usage} without a token count)"
    line += f", waited {total.waited_seconds:.1f} s"
    if total.cost is None:
        line += ", cost unknown (no price configured)" if total.requests else ""
    else:
        line += f", cost {total.cost:.6f}"
        if snapshot.unpriced_models:
            line += f" excluding unpriced {', '.join(snapshot.unpriced_models)}"
    if snapshot.embeddings:
        line += "\n" + _embeddings_line(snapshot.embeddings_total)
    return line


def _embeddings_line(total: ModelUsage) -> str:
    line = (f"embeddings: {total.requests} request{'s' if total.requests != 1 else ''} "
            f"({total.cached_hits} cached, {total.failures} failed), {total.prompt_tokens:,} tokens")
    if total.unreported_usage:
        line += f" ({total.unreported_usage} without a token count)"
    cost = ", cost unknown (no price configured)" if total.cost is None else f", cost {total.cost:.6f}"
    return line + cost
