"""The Anthropic Messages API wire protocol (``POST {base_url}/messages``).

Differences from the OpenAI format that this module absorbs (the request's translation
is :mod:`._anthropic_request`'s job):

- the key goes in ``Authorization: Bearer``, with ``anthropic-version`` — both as the
  current official SDK sends them (:func:`auth_headers`);
- the answer is a list of content blocks: the ``text`` blocks are joined (``thinking``
  blocks are not part of the answer); usage is ``input_tokens``/``output_tokens`` plus
  the prompt cache's ``cache_read_input_tokens``/``cache_creation_input_tokens`` (all
  three make up ``prompt_tokens``); ``stop_reason`` becomes ``finish_reason``;
- the request id is the ``request-id`` header; error bodies are
  ``{"type": "error", "error": {"type", "message"}, "request_id"}``; 529 "overloaded" is
  a ServerError.

Streams are ``message_start``, ``content_block_delta`` (``text_delta``),
``message_delta`` (stop reason, output usage) and ``message_stop``; an ``error`` event
raises the mapped error.
"""

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, TypeGuard

import requests

from ..config._sections import ModelConfig
from ..errors import ConfigError, InvalidResponseError
from ..request._options import ChatOptions
from ..results import ChatResult, EmbeddingResult, Usage
from ..streaming import StreamState
from . import _sse
from ._anthropic_request import DEFAULT_MAX_TOKENS, anthropic_body, unsupported_option
from ._base import HttpProvider
from ._redact import redact
from ._response_meta import JSON_ERRORS, body_request_id, provider_message, request_id_of
from ._stream_events import event_json, stream_error
from ._tool_calls import ToolCallAssembler, anthropic_tool_calls

__all__ = ["AnthropicClient", "parse_messages_response", "auth_headers", "DEFAULT_MAX_TOKENS",
           "ANTHROPIC_VERSION"]

logger = logging.getLogger(__name__)

PROVIDER = "anthropic"
#: The API version the current official SDK (anthropic 2.15) sends.
ANTHROPIC_VERSION = "2026-10-21"
NO_EMBEDDINGS = ("Anthropic has no embeddings endpoint: configure [llm.embeddings] with an "
                 "OpenAI-compatible server (model_name, base_url, api_key and provider = \"openai\", "
                 "or COWORK_LLM_EMBEDDINGS_*)")
# stop_reason values under which an answer without text is legitimate.
_EXPLAINED_EMPTY = frozenset({"max_tokens", "tool_use", "stop_sequence", "pause_turn"})


class AnthropicClient(HttpProvider):
    """A client for ``POST {base_url}/messages`` (``base_url`` like
    ``https://api.anthropic.com/v1``). Safe to share between threads.

    Raises (at construction): what :class:`~cowork_llm.providers._base.HttpProvider`
    raises, and ConfigError for a configured temperature above 1.
    """

    PROVIDER = PROVIDER
    PATH = "/messages"

    def __init__(self, config: ModelConfig, *, api_key: Optional[str] = None,
                 section: str = "llm.model") -> None:
        problem = unsupported_option(config)
        if problem is not None:
            name = problem.split(":")[0]
            raise ConfigError(f"{section}.{problem}: leave it unset for provider 'anthropic'",
                              key=f"{section}.{name}")
        super().__init__(config, api_key=api_key, section=section)

    def _parse_response(self, response: requests.Response) -> ChatResult:
        return parse_messages_response(response, fallback_model=self.config.model_name,
                                       secrets=self._secrets())

    # --- the wire format ------------------------------------------------------------------

    def _body(self, messages: List[Dict[str, Any]], options: ChatOptions, *, stream: bool) -> Dict[str, Any]:
        return anthropic_body(self.config.model_name, messages, options, stream=stream)

    def _headers(self, api_key: str) -> Dict[str, str]:
        return auth_headers(api_key)

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None) -> EmbeddingResult:
        """Raises ConfigError: Anthropic has no embeddings endpoint."""
        raise ConfigError(NO_EMBEDDINGS)

    def _read_stream(self, events: Iterator[_sse.SseEvent], state: StreamState) -> Iterator[str]:
        secrets = self._secrets()
        counts: Dict[str, Any] = {}
        calls = ToolCallAssembler()
        for event in events:
            data = event_json(event, provider=PROVIDER, request_id=state.request_id, secrets=secrets)
            kind = data.get("type") or event.event
            if kind == "message_start":
                message = data.get("message")
                message = message if isinstance(message, dict) else {}
                model = message.get("model")
                if isinstance(model, str) and model:
                    state.model = model
                _counts(message.get("usage"), counts)
            elif kind == "content_block_start":
                block = data.get("content_block")
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    calls.add(_index(data), call_id=block.get("id"), name=block.get("name"))
            elif kind == "content_block_delta":
                delta = data.get("delta")
                if isinstance(delta, dict) and delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if isinstance(text, str) and text:
                        yield text
                elif isinstance(delta, dict) and delta.get("type") == "input_json_delta":
                    piece = delta.get("partial_json")
                    calls.add(_index(data), arguments=piece if isinstance(piece, str) else None)
            elif kind == "message_delta":
                delta = data.get("delta")
                stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
                if isinstance(stop_reason, str):
                    state.finish_reason = stop_reason
                # message_delta's output_tokens is the running total, not an increment
                _counts(data.get("usage"), counts)
            elif kind == "message_stop":
                state.usage = _usage(counts)
                if calls:  # the input arrived in pieces: whole only now
                    state.tool_calls = calls.calls(self._stream_invalid(state))
                return
            elif kind == "error":
                raise stream_error(data.get("error"), provider=PROVIDER, request_id=state.request_id,
                                   secrets=secrets)
            # ping, content_block_start/stop and non-text deltas carry no text
        raise self._stream_ended_early("message_stop", state)


def parse_messages_response(response: requests.Response, *, fallback_model: str,
                            secrets: Sequence[str] = ()) -> ChatResult:
    """The :class:`ChatResult` of a 2xx Messages API response.

    Raises:
        InvalidResponseError: not JSON, no content list, or no text where no
            stop_reason explains it (a refusal included).
    """
    request_id = request_id_of(response.headers, secrets)

    def invalid(what: str) -> InvalidResponseError:
        shown = redact(f"{PROVIDER} sent an unusable answer: {what}", secrets)
        return InvalidResponseError(shown, status_code=response.status_code, request_id=request_id)

    try:
        body = response.json()
    except JSON_ERRORS:
        raise invalid(f"not JSON: {provider_message(response)}") from None
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise invalid(f"no content list in {provider_message(response)}")
    stop_reason = body.get("stop_reason")
    stop_reason = stop_reason if isinstance(stop_reason, str) else None
    texts: List[str] = [block["text"] for block in body["content"]
                        if isinstance(block, dict) and block.get("type") == "text"
                        and isinstance(block.get("text"), str)]
    tool_calls = anthropic_tool_calls(body["content"], invalid)
    if not texts and not tool_calls:
        if stop_reason == "refusal":
            raise invalid("the model refused to answer (stop_reason 'refusal')")
        if stop_reason not in _EXPLAINED_EMPTY:
            raise invalid(f"the answer has no text block (stop_reason {stop_reason!r})")
    counts: Dict[str, Any] = {}
    _counts(body.get("usage"), counts)
    model = body.get("model")
    return ChatResult(
        content="".join(texts),
        model=model if isinstance(model, str) and model else fallback_model,
        finish_reason=stop_reason,
        usage=_usage(counts),
        request_id=request_id or body_request_id(body, secrets),
        raw=body,
        tool_calls=tool_calls,
    )


_COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _counts(usage: Any, counts: Dict[str, Any]) -> None:
    """Copy the counts a usage object carries into ``counts``, keeping earlier values for
    counts it does not carry (message_delta's output_tokens is the running total)."""
    if not isinstance(usage, dict):
        return
    for name in _COUNTS:
        if _is_count(usage.get(name)):
            counts[name] = usage[name]
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and _is_count(details.get("thinking_tokens")):
        counts["thinking_tokens"] = details["thinking_tokens"]


def _usage(counts: Dict[str, Any]) -> Optional[Usage]:
    """The Usage of the collected counts; None without input and output counts. The
    prompt is every input token: uncached, read from the cache and written to it."""
    if "input_tokens" not in counts or "output_tokens" not in counts:
        return None
    cached, created = counts.get("cache_read_input_tokens"), counts.get("cache_creation_input_tokens")
    prompt = counts["input_tokens"] + (cached or 0) + (created or 0)
    return Usage.of(prompt, counts["output_tokens"], cached_prompt_tokens=cached,
                    cache_creation_tokens=created, reasoning_tokens=counts.get("thinking_tokens"))


def _index(data: Dict[str, Any]) -> int:
    index = data.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def auth_headers(api_key: str) -> Dict[str, str]:
    """The headers that carry ``api_key`` and the API version, as the official SDK sends
    them (``Authorization: Bearer``; servers also take ``x-api-key``)."""
    return {"Authorization": f"Bearer {api_key}", "anthropic-version": ANTHROPIC_VERSION}


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: What :func:`cowork_llm.providers.build_provider` builds for ``provider = "anthropic"``.
CLIENT = AnthropicClient
