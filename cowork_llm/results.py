"""What a call returns: :class:`ChatResult` and the :class:`Usage` it carries, and
:class:`EmbeddingResult` for ``embed()``."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .limits import LimitReport

__all__ = ["ChatResult", "Usage", "EmbeddingResult", "ToolCall"]


@dataclass(frozen=True)
class Usage:
    """Tokens the provider counted for one call.

    ``prompt_tokens`` counts every input token, cached ones included. The details are
    None when the provider did not say (never a guessed 0):
    ``cached_prompt_tokens`` of the prompt were read from the provider's prompt cache
    (OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic ``cache_read_input_tokens``);
    ``cache_creation_tokens`` were written to it (Anthropic ``cache_creation_input_tokens``);
    ``reasoning_tokens`` of the completion were spent thinking (OpenAI
    ``completion_tokens_details.reasoning_tokens``, Anthropic
    ``output_tokens_details.thinking_tokens``).
    """

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: Optional[int] = None
    cache_creation_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, *, cached_prompt_tokens: Optional[int] = None,
           cache_creation_tokens: Optional[int] = None, reasoning_tokens: Optional[int] = None) -> "Usage":
        """The usage with ``total_tokens`` = prompt + completion. Never raises."""
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens,
                   cached_prompt_tokens, cache_creation_tokens, reasoning_tokens)


@dataclass(frozen=True)
class ChatResult:
    """One answer. ``model`` names the model that answered (a fallback's, after a
    failover); ``cached`` is True when the response cache served it.

    Set by :class:`~cowork_llm.client.RateLimitedLlm`: ``started_at`` is the
    wall-clock time (``time.time()``) the last attempt's slot was granted, i.e. when its
    request was sent (None for a cache hit, which sent nothing); ``waited_seconds`` the
    time spent waiting for the rate limiter, over all attempts. ``parsed`` holds the
    structured answer of a ``response_format`` request.

    ``rate_limits``: the response's rate-limit headers
    (a :class:`~cowork_llm.limits.LimitReport`), None when the server sent none.
    """

    content: str
    model: str
    finish_reason: Optional[str] = None
    usage: Optional[Usage] = None
    request_id: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    cached: bool = False
    started_at: Optional[float] = field(default=None, compare=False)
    waited_seconds: float = field(default=0.0, compare=False)
    #: With ``response_format``: the answer's JSON (a dataclass instance for a dataclass
    #: format), checked against the schema. None otherwise.
    parsed: Any = field(default=None, compare=False)
    rate_limits: Optional[LimitReport] = field(default=None, repr=False, compare=False)
    #: the function calls the model asked for, in order; () when it asked for none
    tool_calls: "Tuple[ToolCall, ...]" = ()


@dataclass(frozen=True)
class EmbeddingResult:
    """The vectors of one ``embed()`` call, in input order (``vectors[i]`` is the
    embedding of ``texts[i]``). ``usage`` sums the requests' prompt tokens (None when a
    request sent went without a count); ``cached`` is True when the cache answered every
    text. ``requests`` is how many HTTP requests (batches) were made, retries not counted.
    """

    vectors: List[List[float]]
    model: str
    usage: Optional[Usage] = None
    request_id: Optional[str] = None  #: the last request's
    cached: bool = False
    requests: int = field(default=1, compare=False)

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for. ``arguments`` is the decoded JSON object;
    ``raw_arguments`` the text as the provider sent it (OpenAI sends a JSON string;
    for Anthropic, whose ``input`` is an object, it is that object re-encoded)."""

    id: str
    name: str
    arguments: Dict[str, Any]
    raw_arguments: str = field(default="", repr=False)

    def to_message(self) -> Dict[str, Any]:
        """The entry of an assistant message's ``tool_calls`` (OpenAI's format)."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.raw_arguments or _dumps(self.arguments)}}


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
