"""The OpenAI chat-completions wire protocol, for OpenAI and every compatible server
(llama.cpp, vLLM, Ollama, LiteLLM, ...).

One :meth:`OpenAIClient.chat` is exactly one HTTP attempt: no retry and no rate limit
here; :mod:`cowork_llm.rate_limiter` and :mod:`cowork_llm.retry` wrap it.

A ``content: null`` answer is accepted only when ``finish_reason`` explains it
(``length``, ``content_filter``, ``tool_calls``, ``function_call``): the result then has
``content == ""`` and the reason in ``finish_reason``. A message with ``tool_calls`` may
have no content whatever the finish_reason (llama.cpp says ``length`` for a call cut
short); the calls are ``ChatResult.tool_calls``, their arguments decoded (not a JSON
object: InvalidResponseError). Streamed calls arrive in ``delta.tool_calls`` pieces and
are assembled when the stream ends. A null content with a ``refusal``
or with no explaining reason is an :class:`InvalidResponseError`.

:meth:`OpenAIClient.stream` asks for ``"stream": true`` with
``stream_options.include_usage``, and reads ``chat.completion.chunk`` events up to
``data: [DONE]``; usage comes from the last chunk, and the request id from the chunks'
``id`` when the server sent no request-id header (llama.cpp).

The request itself is built by :mod:`._openai_request`. The token limit goes out as
``max_completion_tokens`` or ``max_tokens`` (``llm.model.max_tokens_field``); when OpenAI
answers 400 that this model takes only ``max_completion_tokens``, the client remembers
that for the model and raises :class:`~cowork_llm.errors.TokenFieldRejectedError`, which
:class:`~cowork_llm.client.RateLimitedLlm` answers by sending the request once more.
``data: [DONE]``; usage comes from the last chunk.

:meth:`OpenAIClient.embed` posts one batch of texts to ``{base_url}/embeddings``
(:mod:`._embeddings`).
"""

import logging
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, TypeGuard

import requests

from ..config._sections import ModelConfig
from ..errors import InvalidResponseError, LlmApiError, TokenFieldRejectedError
from ..request._embed_input import check_dimensions, check_texts
from ..request._options import ChatOptions
from ..results import ChatResult, EmbeddingResult, Usage
from ..streaming import StreamState
from . import _sse
from ._base import HttpProvider
from ._embeddings import EMBEDDINGS_PATH, embeddings_body, parse_embeddings_response
from ._openai_request import configured_token_field, is_token_field_error, openai_body
from ._redact import redact
from ._response_meta import (
    JSON_ERRORS,
    MAX_MESSAGE_CHARS,
    body_request_id,
    error_object,
    provider_message,
    request_id_of,
)
from ._stream_events import event_json, stream_error
from ._tool_calls import ToolCallAssembler, openai_tool_calls

__all__ = ["OpenAIClient", "parse_chat_response", "auth_headers"]

logger = logging.getLogger(__name__)

PROVIDER = "openai"
# finish_reason values under which a null content is a legitimate (empty) answer.
_EXPLAINED_EMPTY = frozenset({"length", "content_filter", "tool_calls", "function_call"})


class OpenAIClient(HttpProvider):
    """A client for ``POST {base_url}/chat/completions``. Safe to share between threads:
    each thread gets its own HTTP session.

    Raises (at construction): what :class:`~cowork_llm.providers._base.HttpProvider` raises.
    """

    PROVIDER = PROVIDER
    PATH = "/chat/completions"

    def __init__(self, config: ModelConfig, *, api_key: Optional[str] = None,
                 section: str = "llm.model") -> None:
        super().__init__(config, api_key=api_key, section=section)
        # Models that answered "use max_completion_tokens": shared by every thread.
        self._completion_token_models: Set[str] = set()
        self._lock = threading.Lock()

    # --- the wire format ------------------------------------------------------------------

    def _parse_response(self, response: requests.Response) -> ChatResult:
        return parse_chat_response(response, fallback_model=self.config.model_name, secrets=self._secrets())

    def token_field(self) -> str:
        """The field the token limit goes out as now, for this client's model."""
        with self._lock:
            if self.config.model_name in self._completion_token_models:
                return "max_completion_tokens"
        return configured_token_field(self.config)

    def _body(self, messages: List[Dict[str, Any]], options: ChatOptions, *, stream: bool) -> Dict[str, Any]:
        return openai_body(self.config.model_name, messages, options, token_field=self.token_field(),
                           stream=stream)

    def _headers(self, api_key: str) -> Dict[str, str]:
        return auth_headers(api_key)

    def _refine_error(self, error: LlmApiError, response: requests.Response,
                      body: Mapping[str, Any]) -> LlmApiError:
        try:
            detail = error_object(response.json())
        except JSON_ERRORS:
            return error
        if not is_token_field_error(response.status_code, detail, body):
            return error
        with self._lock:
            self._completion_token_models.add(self.config.model_name)
        logger.info("%s: model %s takes max_completion_tokens, not max_tokens; sending that from now on",
                    self.config.host, self.config.model_name)
        return TokenFieldRejectedError(error.message + "; the client now sends max_completion_tokens "
                                       "for this model", status_code=400, request_id=error.request_id,
                                       retry_after=0.0)

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None) -> EmbeddingResult:
        """One ``POST {base_url}/embeddings`` for all of ``texts``, with this client's
        model (batching is :class:`~cowork_llm.client.RateLimitedLlm`'s job).

        Raises:
            ValueError: bad texts or dimensions (before any request).
            LlmApiError: the subclass for what failed; InvalidResponseError when the
                answer does not hold one vector per text.
        """
        checked = check_texts(texts)
        dimensions = check_dimensions(dimensions)
        body = embeddings_body(self.config.model_name, checked, dimensions)
        response = self._send(body, path=EMBEDDINGS_PATH)
        return parse_embeddings_response(response, expected=len(checked), provider=PROVIDER,
                                         fallback_model=self.config.model_name, dimensions=dimensions,
                                         secrets=self._secrets())

    def _read_stream(self, events: Iterator[_sse.SseEvent], state: StreamState) -> Iterator[str]:
        secrets = self._secrets()
        calls = ToolCallAssembler()
        for event in events:
            if event.data.strip() == "[DONE]":
                if calls:  # the arguments arrived in pieces: whole only now
                    state.tool_calls = calls.calls(self._stream_invalid(state))
                return
            chunk = event_json(event, provider=PROVIDER, request_id=state.request_id, secrets=secrets)
            if state.request_id is None:  # no request-id header (llama.cpp): the chunks' id
                state.request_id = body_request_id(chunk, secrets)
            if "error" in chunk:  # some compatible servers report a failure inside the stream
                raise stream_error(chunk["error"], provider=PROVIDER, request_id=state.request_id,
                                   secrets=secrets)
            model = chunk.get("model")
            if isinstance(model, str) and model:
                state.model = model
            usage = _usage(chunk.get("usage"))
            if usage is not None:
                state.usage = usage
            choices = chunk.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue  # the usage chunk has no choices
            finish_reason = choices[0].get("finish_reason")
            if isinstance(finish_reason, str):
                state.finish_reason = finish_reason
            delta = choices[0].get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(delta, dict) and "tool_calls" in delta:
                calls.add_openai_deltas(delta["tool_calls"])
            if isinstance(content, str) and content:
                yield content
        raise self._stream_ended_early("data: [DONE]", state)


def parse_chat_response(response: requests.Response, *, fallback_model: str,
                        secrets: Sequence[str] = ()) -> ChatResult:
    """The :class:`ChatResult` of a 2xx chat-completions response. Tolerates what
    compatible servers omit (usage, id, logprobs, refusal, system_fingerprint).

    Raises:
        InvalidResponseError: not JSON, no usable choice, or a null content that no
            finish_reason explains.
    """
    request_id = request_id_of(response.headers, secrets)

    def invalid(what: str) -> InvalidResponseError:
        shown = redact(f"{PROVIDER} sent an unusable answer: {what}", secrets)
        return InvalidResponseError(shown, status_code=response.status_code, request_id=request_id)

    try:
        body = response.json()
    except JSON_ERRORS:
        raise invalid(f"not JSON: {provider_message(response)}") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise invalid(f"no choices in {provider_message(response)}")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise invalid("the first choice has no message")
    finish_reason = choice.get("finish_reason")
    finish_reason = finish_reason if isinstance(finish_reason, str) else None
    content = _content_text(message.get("content"))
    tool_calls = openai_tool_calls(message.get("tool_calls"), invalid)
    if content is None and tool_calls:
        content = ""  # only tool calls: whatever finish_reason says (some servers say "stop")
    if content is None:
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise invalid(f"the model refused: {refusal[:MAX_MESSAGE_CHARS]}")
        if finish_reason not in _EXPLAINED_EMPTY:
            raise invalid(f"the message has no content (finish_reason {finish_reason!r})")
        content = ""
    model = body.get("model")
    return ChatResult(
        content=content,
        model=model if isinstance(model, str) and model else fallback_model,
        finish_reason=finish_reason,
        usage=_usage(body.get("usage")),
        request_id=request_id or body_request_id(body, secrets),
        raw=body,
        tool_calls=tool_calls,
    )


def _content_text(content: Any) -> Optional[str]:
    """A string content as is; a list of content parts joined (some servers send
    ``[{"type": "text", "text": ...}]``); anything else None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        strings = [text for text in texts if isinstance(text, str)]
        return "".join(strings) if strings else None
    return None


def _usage(raw: Any) -> Optional[Usage]:
    """Usage when the counts are there and are integers (details where given); otherwise None."""
    if not isinstance(raw, dict):
        return None
    prompt, completion, total = (raw.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not (_is_count(prompt) and _is_count(completion)):
        return None
    return Usage(prompt, completion, total if _is_count(total) else prompt + completion,
                 cached_prompt_tokens=_detail(raw, "prompt_tokens_details", "cached_tokens"),
                 reasoning_tokens=_detail(raw, "completion_tokens_details", "reasoning_tokens"))


def _detail(raw: Dict[str, Any], group: str, name: str) -> Optional[int]:
    details = raw.get(group)
    value = details.get(name) if isinstance(details, dict) else None
    return value if _is_count(value) else None


def auth_headers(api_key: str) -> Dict[str, str]:
    """The headers that carry ``api_key``: ``Authorization: Bearer``."""
    return {"Authorization": f"Bearer {api_key}"}


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: What :func:`cowork_llm.providers.build_provider` builds for ``provider = "openai"``.
CLIENT = OpenAIClient
