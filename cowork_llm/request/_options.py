"""The per-call options of a chat request, checked once, carried as one value.

:class:`ChatOptions` holds what a caller passes to ``chat()``/``stream()`` besides the
messages: the sampling options, the token limit, structured output, reasoning effort,
``extra_body`` and the tools (``tools``, ``tool_choice``, ``parallel_tool_calls``).
Every layer (rate limiter, retries, fallbacks, cache, mock, providers) passes the same
frozen object down; a provider fills in the configured defaults
(:meth:`ChatOptions.with_defaults`) and translates it to its wire format.

The checks here are the provider-independent ones; a provider narrows them where its
API does (Anthropic has no ``seed``, for instance) and says so with a ValueError.
"""

import json
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple

from ..tools._normalize import check_parallel_tool_calls, check_tool_choice, normalize_tools
from ._structured import ResponseFormat, check_response_format

if TYPE_CHECKING:
    from ..config._sections import ModelConfig

__all__ = ["ChatOptions", "REASONING_EFFORTS", "MAX_STOP_SEQUENCES", "check_temperature", "check_max_tokens",
           "check_top_p", "check_stop", "check_seed", "check_reasoning_effort", "check_options"]

#: The values OpenAI's ``ReasoningEffort`` takes (the vendored spec's enum).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
#: OpenAI takes at most 4 stop sequences (CreateChatCompletionRequest.stop, maxItems 4).
MAX_STOP_SEQUENCES = 4
# Keys extra_body may not set: they are the request itself, not an option of it.
_RESERVED_BODY_KEYS = frozenset({"model", "messages", "stream"})


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


def check_top_p(value: Any) -> float:
    """Raises ValueError unless ``value`` is a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"top_p must be a number from 0 to 1, got {value!r}")
    return value


def check_stop(value: Any) -> Tuple[str, ...]:
    """A stop string or a list of 1 to 4 non-empty strings, as a tuple. Raises ValueError."""
    stops = (value,) if isinstance(value, str) else value
    if not isinstance(stops, (list, tuple)) or not stops or not all(isinstance(s, str) and s for s in stops):
        raise ValueError(f"stop must be a non-empty string or a list of them, got {value!r:.80}")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise ValueError(f"stop takes at most {MAX_STOP_SEQUENCES} sequences (OpenAI's limit), "
                         f"got {len(stops)}")
    return tuple(stops)


def check_seed(value: Any) -> int:
    """Raises ValueError unless ``value`` is an integer that fits in 64 bits."""
    if isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63:
        raise ValueError(f"seed must be an integer (64-bit), got {value!r}")
    return value


def check_reasoning_effort(value: Any) -> str:
    """Raises ValueError unless ``value`` is one of :data:`REASONING_EFFORTS`."""
    if value not in REASONING_EFFORTS:
        raise ValueError(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, got {value!r}")
    return value


def _check_extra_body(value: Any) -> Dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"extra_body must be a dict with string keys, got {type(value).__name__}")
    reserved = sorted(_RESERVED_BODY_KEYS & set(value))
    if reserved:
        raise ValueError(f"extra_body cannot set {', '.join(map(repr, reserved))}: pass the model in the "
                         "configuration and the messages as the first argument (streaming: use stream())")
    try:  # a private copy, and a check that it can be sent at all
        copied: Dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra_body must hold plain JSON values ({error})") from None
    return copied


@dataclass(frozen=True)
class ChatOptions:
    """The checked options of one call; None means "not set here" (the configured
    default, or the provider's, applies). ``cache=False`` keeps a response cache from
    answering or storing this call (Llms without a cache ignore it)."""

    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    top_p: Optional[float] = None
    stop: Optional[Tuple[str, ...]] = None
    seed: Optional[int] = None
    response_format: Optional[ResponseFormat] = None
    reasoning_effort: Optional[str] = None
    extra_body: Optional[Dict[str, Any]] = None
    cache: bool = True
    #: OpenAI-format tool dicts (functions already turned into them; see cowork_llm.tools)
    tools: Optional[Tuple[Dict[str, Any], ...]] = None
    tool_choice: Any = None  #: "auto" | "none" | "required" | {"type": "function", ...}
    parallel_tool_calls: Optional[bool] = None

    @classmethod
    def of(cls, **options: Any) -> "ChatOptions":
        """Check and bundle keyword options as ``chat()`` takes them.

        Raises:
            TypeError: an unknown option name (as a misspelt keyword argument would).
            ValueError: a value out of range or of the wrong type, naming the option.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} (chat options are: "
                            f"{', '.join(sorted(known))})")
        checks: Dict[str, Callable[[Any], Any]] = {
                  "temperature": check_temperature, "max_tokens": check_max_tokens, "top_p": check_top_p,
                  "stop": check_stop, "seed": check_seed, "reasoning_effort": check_reasoning_effort,
                  "response_format": check_response_format, "extra_body": _check_extra_body}
        checked = {name: checks[name](value) if name in checks and value is not None else value
                   for name, value in options.items()}
        tools = checked.get("tools")
        names = None
        if tools is not None:
            checked["tools"] = normalize_tools(tools)[0]
            names = [tool["function"]["name"] for tool in checked["tools"]]
        checked["tool_choice"] = check_tool_choice(checked.get("tool_choice"), names)
        checked["parallel_tool_calls"] = check_parallel_tool_calls(checked.get("parallel_tool_calls"),
                                                                   tools is not None)
        if not isinstance(checked.get("cache", True), bool):
            raise ValueError(f"cache must be True or False, got {checked['cache']!r}")
        return cls(**checked)

    def with_defaults(self, model: "ModelConfig") -> "ChatOptions":
        """These options with the unset ones taken from ``model`` (``[llm.model]``)."""
        defaults = {name: getattr(model, name, None) for name in
                    ("temperature", "max_tokens", "top_p", "seed", "reasoning_effort")}
        defaults["stop"] = tuple(model.stop) if getattr(model, "stop", ()) else None
        filled = {name: value for name, value in defaults.items()
                  if value is not None and getattr(self, name) is None}
        return replace(self, **filled) if filled else self

    def cache_material(self) -> Dict[str, Any]:
        """Everything that changes the answer, as plain JSON values (unset ones left out):
        part of the response cache key."""
        material: Dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "cache":
                continue
            if isinstance(value, ResponseFormat):
                value = value.cache_material()
            elif isinstance(value, tuple):
                value = list(value)
            elif f.name == "tool_choice" and isinstance(value, dict):
                value = dict(value)
            material[f.name] = value
        return material

    def as_dict(self) -> Dict[str, Any]:
        """Every option as passed (None included), for records such as MockLlm's."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_options(temperature: Any = None, max_tokens: Any = None) -> None:
    """The old two-option check, kept for callers of 0.x. Raises ValueError."""
    ChatOptions.of(temperature=temperature, max_tokens=max_tokens)
