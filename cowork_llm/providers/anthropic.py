"""The Anthropic Messages API wire protocol (``POST {base_url}/messages``).

Differences from the OpenAI format that this module absorbs:

- the key goes in ``x-api-key``, with ``anthropic-version: 2023-06-01``;
- system messages are not messages: they are joined (blank line between) into the
  top-level ``system`` field;
- ``max_tokens`` is required: when neither the call nor the config sets it,
  :data:`DEFAULT_MAX_TOKENS` (1024) is sent;
- temperature runs from 0 to 1, not 2;
- the answer is a list of content blocks: the ``text`` blocks are joined; usage is
  ``input_tokens``/``output_tokens``; ``stop_reason`` becomes ``finish_reason``;
- the request id is the ``request-id`` header; error bodies are
  ``{"type": "error", "error": {"type", "message"}}``; 529 "overloaded" is a ServerError.

Streams are ``message_start``, ``content_block_delta`` (``text_delta``),
``message_delta`` (stop reason, output usage) and ``message_stop``; an ``error`` event
raises the mapped error.
"""

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, TypeGuard

import requests

from ..config._sections import ModelConfig
from ..errors import ConfigError, InvalidResponseError
from ..llm import Message, check_max_tokens, check_temperature, validate_messages
from ..results import ChatResult, EmbeddingResult, Usage
from ..streaming import StreamState
from . import _http, _sse
from ._base import HttpProvider, event_json, stream_error

__all__ = ["AnthropicClient", "parse_messages_response", "DEFAULT_MAX_TOKENS", "ANTHROPIC_VERSION"]

logger = logging.getLogger(__name__)

PROVIDER = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"
#: Sent as ``max_tokens`` when neither the call nor ``llm.model.max_tokens`` sets it
#: (the API requires the field). Set ``max_tokens`` for longer answers.
DEFAULT_MAX_TOKENS = 1024
_MAX_TEMPERATURE = 1.0
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
        if config.temperature is not None and config.temperature > _MAX_TEMPERATURE:
            raise ConfigError(f"{section}.temperature must be between 0 and 1 for provider "
                              f"'anthropic', got {config.temperature!r}", key=f"{section}.temperature")
        super().__init__(config, api_key=api_key, section=section)

    def _parse_response(self, response: requests.Response) -> ChatResult:
        return parse_messages_response(response, fallback_model=self.config.model_name,
                                       secrets=self._secrets())

    # --- the wire format ------------------------------------------------------------------

    def request_body(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        stream: bool = False,
    ) -> Dict[str, Any]:
        """The JSON body: system prompts in ``system``, the rest in ``messages``.

        Raises:
            ValueError: bad messages (or only system messages), temperature outside 0 to
                1, or max_tokens below 1.
        """
        checked = validate_messages(messages)
        system = [m["content"] for m in checked if m["role"] == "system"]
        conversation = [m for m in checked if m["role"] != "system"]
        if not conversation:
            raise ValueError("messages must hold at least one user or assistant message "
                             "(Anthropic takes system prompts separately)")
        if temperature is not None:
            temperature = check_temperature(temperature, maximum=_MAX_TEMPERATURE)
        else:
            temperature = self.config.temperature
        if max_tokens is not None:
            max_tokens = check_max_tokens(max_tokens)
        else:
            max_tokens = self.config.max_tokens or DEFAULT_MAX_TOKENS
        body: Dict[str, Any] = {"model": self.config.model_name, "messages": conversation,
                                "max_tokens": max_tokens}
        if system:
            body["system"] = "\n\n".join(system)
        if temperature is not None:
            body["temperature"] = temperature
        if stream:
            body["stream"] = True
        return body

    def _headers(self, api_key: str) -> Dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None) -> EmbeddingResult:
        """Raises ConfigError: Anthropic has no embeddings endpoint."""
        raise ConfigError(NO_EMBEDDINGS)

    def _read_stream(self, events: Iterator[_sse.SseEvent], state: StreamState) -> Iterator[str]:
        secrets = self._secrets()
        input_tokens: Optional[int] = None
        output_tokens: Optional[int] = None
        for event in events:
            data = event_json(event, provider=PROVIDER, request_id=state.request_id, secrets=secrets)
            kind = data.get("type") or event.event
            if kind == "message_start":
                message = data.get("message")
                message = message if isinstance(message, dict) else {}
                model = message.get("model")
                if isinstance(model, str) and model:
                    state.model = model
                input_tokens, output_tokens = _counts(message.get("usage"), input_tokens, output_tokens)
            elif kind == "content_block_delta":
                delta = data.get("delta")
                if isinstance(delta, dict) and delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if isinstance(text, str) and text:
                        yield text
            elif kind == "message_delta":
                delta = data.get("delta")
                stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
                if isinstance(stop_reason, str):
                    state.finish_reason = stop_reason
                # message_delta's output_tokens is the running total, not an increment
                input_tokens, output_tokens = _counts(data.get("usage"), input_tokens, output_tokens)
            elif kind == "message_stop":
                if input_tokens is not None and output_tokens is not None:
                    state.usage = Usage.of(input_tokens, output_tokens)
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
    request_id = _http.request_id_of(response.headers, secrets)

    def invalid(what: str) -> InvalidResponseError:
        shown = _http.redact(f"{PROVIDER} sent an unusable answer: {what}", secrets)
        return InvalidResponseError(shown, status_code=response.status_code, request_id=request_id)

    try:
        body = response.json()
    except _http.JSON_ERRORS:
        raise invalid(f"not JSON: {_http.provider_message(response)}") from None
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise invalid(f"no content list in {_http.provider_message(response)}")
    stop_reason = body.get("stop_reason")
    stop_reason = stop_reason if isinstance(stop_reason, str) else None
    texts: List[str] = [block["text"] for block in body["content"]
                        if isinstance(block, dict) and block.get("type") == "text"
                        and isinstance(block.get("text"), str)]
    if not texts:
        if stop_reason == "refusal":
            raise invalid("the model refused to answer (stop_reason 'refusal')")
        if stop_reason not in _EXPLAINED_EMPTY:
            raise invalid(f"the answer has no text block (stop_reason {stop_reason!r})")
    input_tokens, output_tokens = _counts(body.get("usage"), None, None)
    usage = Usage.of(input_tokens, output_tokens) if input_tokens is not None and output_tokens is not None \
        else None
    model = body.get("model")
    return ChatResult(
        content="".join(texts),
        model=model if isinstance(model, str) and model else fallback_model,
        finish_reason=stop_reason,
        usage=usage,
        request_id=request_id or _http.body_request_id(body, secrets),
        raw=body,
    )


def _counts(usage: Any, input_tokens: Optional[int],
            output_tokens: Optional[int]) -> "tuple[Optional[int], Optional[int]]":
    """``input_tokens``/``output_tokens`` from a usage object, keeping the previous value
    for a count it does not carry."""
    if isinstance(usage, dict):
        if _is_count(usage.get("input_tokens")):
            input_tokens = usage["input_tokens"]
        if _is_count(usage.get("output_tokens")):
            output_tokens = usage["output_tokens"]
    return input_tokens, output_tokens


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: What :func:`cowork_llm.providers.build_provider` builds for ``provider = "anthropic"``.
CLIENT = AnthropicClient
