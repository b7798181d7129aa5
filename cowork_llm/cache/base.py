"""What every response cache shares: the key of an answer, the stored form of a result,
and the :class:`ResponseCache` interface."""


import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Optional, Sequence

from ..llm import Message
from ..results import ChatResult, ToolCall, Usage

__all__ = ["ResponseCache", "cache_key", "result_to_json", "result_from_json", "Clock"]

Clock = Callable[[], float]

# Bumped when what goes into a key, or how a result is stored, changes: old entries then
# simply stop matching.
_KEY_VERSION = "cowork-llm-cache-2"  # 2: every chat option, usage details
# Option names that smell of credentials; refusing them keeps a careless caller from
# mixing a secret into a key (a hash of it would still be a fingerprint of the secret).
_SECRET_WORDS = ("key", "authorization", "token", "secret", "password")
_ALLOWED_TOKEN_OPTIONS = frozenset({"max_tokens", "max_completion_tokens"})


def cache_key(provider: str, base_url: str, model: str, messages: Sequence[Message],
              options: Optional[Mapping[str, Any]] = None) -> str:
    """sha256 (hex) of the canonical JSON of everything that determines an answer.

    Options whose value is None are left out (None means "the server's default", the
    same as not sending it); a trailing "/" of base_url does not matter.

    Raises:
        ValueError: an option looks like a credential (``api_key`` ...), or a message or
            option value cannot be written as JSON.
    """
    options = {name: value for name, value in (options or {}).items() if value is not None}
    for name in options:
        lowered = name.lower()
        if lowered not in _ALLOWED_TOKEN_OPTIONS and any(w in lowered for w in _SECRET_WORDS):
            raise ValueError(f"cache_key option {name!r} looks like a credential; "
                             "credentials must never be part of a cache key")
    material = {
        "version": _KEY_VERSION,
        "provider": provider,
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": [dict(m) for m in messages],
        "options": options,
    }
    try:
        blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cache_key: messages and options must be plain JSON values ({error})") from None
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def result_to_json(result: ChatResult) -> str:
    """The stored form of a result (without ``raw``, ``cached`` and ``parsed``: a hit is
    parsed again from its content)."""
    usage = result.usage
    return json.dumps({
        "content": result.content,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "usage": None if usage is None else [usage.prompt_tokens, usage.completion_tokens,
                                             usage.total_tokens, usage.cached_prompt_tokens,
                                             usage.cache_creation_tokens, usage.reasoning_tokens],
        "request_id": result.request_id,
        "tool_calls": [[c.id, c.name, c.raw_arguments or json.dumps(c.arguments)] for c in result.tool_calls],
    }, ensure_ascii=False)


def result_from_json(text: str) -> ChatResult:
    """A hit rebuilt from :func:`result_to_json`'s output, marked ``cached=True``.

    Raises:
        ValueError: the text is not a stored result (a damaged entry).
    """
    try:
        data = json.loads(text)
        usage = data["usage"]
        content, model = data["content"], data["model"]
        if not isinstance(content, str) or not isinstance(model, str):
            raise TypeError("content and model must be strings")
        return ChatResult(
            content=content,
            model=model,
            finish_reason=data["finish_reason"],
            usage=None if usage is None else _usage_of(usage),
            request_id=data["request_id"],
            cached=True,
            tool_calls=tuple(_tool_call_of(entry) for entry in data.get("tool_calls", ())),
        )
    except (TypeError, KeyError, ValueError) as error:
        raise ValueError(f"not a stored result: {error}") from None


def _tool_call_of(stored: Any) -> ToolCall:
    """A ToolCall from its stored ``[id, name, raw_arguments]``. Raises ValueError."""
    call_id, name, raw = stored
    arguments = json.loads(raw) if raw else {}
    if not all(isinstance(v, str) for v in (call_id, name, raw)) or not isinstance(arguments, dict):
        raise ValueError("a stored tool call must be [id, name, JSON object text]")
    return ToolCall(call_id, name, arguments, raw)


def _usage_of(stored: Any) -> Usage:
    """The Usage of a stored list: three counts, then the details (None when unknown;
    entries written before the details existed have only the three)."""
    counts = [int(n) for n in stored[:3]]
    details = [None if n is None else int(n) for n in stored[3:6]]
    return Usage(*counts, *details)  # type: ignore[arg-type]


class ResponseCache(ABC):
    """Where answers are kept. Implementations are thread-safe and never raise from
    :meth:`get` or :meth:`put`."""

    @abstractmethod
    def get(self, key: str) -> Optional[ChatResult]:
        """The stored answer for ``key`` (with ``cached=True``), or None: missing,
        expired, or the cache failed (logged)."""

    @abstractmethod
    def put(self, key: str, result: ChatResult) -> None:
        """Store ``result`` under ``key``, replacing any older entry; evicts to stay
        within ``max_entries``."""

    def close(self) -> None:  # noqa: B027 - optional hook, most caches hold nothing to release
        """Release files and connections. Safe to call twice."""
