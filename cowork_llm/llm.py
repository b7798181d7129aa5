"""The ``Llm`` interface every provider, wrapper and mock implements, and the checks of
its arguments (messages, options) that run before anything is sent."""

import collections.abc
import hashlib
import json
from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Type

from .results import ChatResult, EmbeddingResult
from .streaming import ChatStream, StreamState

if TYPE_CHECKING:
    from .health import HealthStatus
    from .usage import UsageSnapshot

__all__ = ["Llm", "Message", "validate_messages", "prompt_hash", "build_messages", "check_options"]

Message = Mapping[str, str]
ROLES = ("system", "user", "assistant")


def validate_messages(messages: Any) -> List[Dict[str, str]]:
    """Return ``messages`` as a list of plain dicts.

    Raises:
        ValueError: no messages, a message that is not a mapping, an unknown role, or
            content that is not a non-empty string. Raised before any request is made.
    """
    # collections.abc, not typing: the same checks, without typing's alias indirection.
    if isinstance(messages, (str, bytes)) or not isinstance(messages, collections.abc.Sequence):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise ValueError("messages must not be empty")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, collections.abc.Mapping):
            raise ValueError(f"messages[{i}] must be a dict, got {type(message).__name__}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]['content'] must be a string, got {type(content).__name__}")
        if not content.strip():
            raise ValueError(f"messages[{i}]['content'] must not be empty")
        checked.append({"role": role, "content": content})
    return checked


def check_temperature(value: Any, *, maximum: float = 2.0) -> float:
    """Raises ValueError unless ``value`` is a number from 0 to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= maximum:
        raise ValueError(f"temperature must be a number from 0 to {maximum:g}, got {value!r}")
    return value


def check_max_tokens(value: Any) -> int:
    """Raises ValueError unless ``value`` is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_tokens must be an integer of at least 1, got {value!r}")
    return value


def check_options(temperature: Any, max_tokens: Any) -> None:
    """The per-call options, where set. Raises ValueError for a temperature outside
    0..2 or a max_tokens below 1 (a provider may narrow the range, e.g. Anthropic's 0..1)."""
    if temperature is not None:
        check_temperature(temperature)
    if max_tokens is not None:
        check_max_tokens(max_tokens)


def build_messages(prompt: Any, system_prompt: Optional[str] = None) -> List[Dict[str, str]]:
    """The messages for ``generate_content``. Raises ValueError on a bad prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r:.40}")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return messages


def prompt_hash(messages: Sequence[Message]) -> str:
    """12 hex digits of sha256 over the messages: lets logs correlate calls without
    showing the prompt."""
    blob = json.dumps([dict(m) for m in messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


class Llm(ABC):
    """A chat model. Implementations are safe to share between threads."""

    name: str = "llm"

    @abstractmethod
    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
    ) -> ChatResult:
        """Send ``messages`` and return the answer.

        Raises:
            ValueError: bad messages or options (before any request).
            LlmApiError: a subclass saying what went wrong with the request.
        """

    def generate_content(self, prompt: str, system_prompt: Optional[str] = None) -> str:
        """Answer one prompt; the text only. Raises what :meth:`chat` raises."""
        return self.chat(build_messages(prompt, system_prompt)).content

    def stream(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
    ) -> ChatStream:
        """Return the answer as a :class:`~cowork_llm.streaming.ChatStream`: an iterator
        of text pieces and a context manager. This default asks :meth:`chat` and yields
        the whole answer as one piece; providers override it with real streaming.

        Raises what :meth:`chat` raises, before the first piece; a stream that fails
        mid-answer raises its LlmApiError while being iterated."""
        result = self.chat(messages, temperature=temperature, max_tokens=max_tokens)
        state = StreamState(model=result.model, request_id=result.request_id,
                            usage=result.usage, finish_reason=result.finish_reason)
        return ChatStream(iter([result.content]), state)

    def stream_content(self, prompt: str, system_prompt: Optional[str] = None) -> ChatStream:
        """:meth:`stream` for one prompt. Raises what :meth:`stream` raises."""
        return self.stream(build_messages(prompt, system_prompt))

    def usage(self) -> "UsageSnapshot":
        """The usage totals (calls, tokens, cost) of this client so far.

        Raises:
            NotImplementedError: this Llm keeps no totals (the clients of
                :func:`~cowork_llm.create_llm_client` do).
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no usage totals")

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None) -> EmbeddingResult:
        """The embedding of each text, in input order (``dimensions`` asks models that
        can shorten their vectors for that length).

        Raises:
            ValueError: bad texts or dimensions (before any request).
            ConfigError: no embeddings model is configured, or the provider has no
                embeddings endpoint (Anthropic).
            NotImplementedError: this Llm cannot embed.
            LlmApiError: a subclass saying what went wrong with the request.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot embed")

    def health(self, *, timeout: float = 5.0) -> "HealthStatus":
        """Check that the provider answers and accepts the key, using no completion quota.

        Raises:
            NotImplementedError: this Llm cannot check a provider (HTTP providers and
                RateLimitedLlm can).
        """
        raise NotImplementedError(f"{type(self).__name__} has no health check")

    def close(self) -> None:  # noqa: B027 - optional hook: most Llms hold nothing to close
        """Release connections and threads. Safe to call twice; never raises."""

    def __enter__(self) -> "Llm":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
