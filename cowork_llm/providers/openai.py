"""The OpenAI chat-completions wire protocol, for OpenAI and every compatible server
(llama.cpp, vLLM, Ollama, LiteLLM, ...).

One :meth:`OpenAIClient.chat` is exactly one HTTP attempt: no retry and no rate limit
here; :mod:`cowork_llm.rate_limiter` and :mod:`cowork_llm.retry` wrap it.

A ``content: null`` answer is accepted only when ``finish_reason`` explains it
(``length``, ``content_filter``, ``tool_calls``, ``function_call``): the result then has
``content == ""`` and the reason in ``finish_reason``. A null content with a ``refusal``
or with no explaining reason is an :class:`InvalidResponseError`.
"""

import logging
import os
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, TypeGuard

import requests

from ..config import ModelConfig
from ..errors import ConfigError, InvalidResponseError, MissingApiKeyError
from ..llm import ChatResult, Llm, Message, Usage, validate_messages
from . import _http

__all__ = ["OpenAIClient", "parse_chat_response"]

logger = logging.getLogger(__name__)

PROVIDER = "openai"
_CONFIG_KEY = "llm.model"
# finish_reason values under which a null content is a legitimate (empty) answer.
_EXPLAINED_EMPTY = frozenset({"length", "content_filter", "tool_calls", "function_call"})


class OpenAIClient(Llm):
    """A client for ``POST {base_url}/chat/completions``. Safe to share between threads:
    each thread gets its own HTTP session.

    Raises (at construction):
        ConfigError: plain ``http://`` to a non-loopback host without
            ``allow_insecure_http``, or a ``ca_bundle`` file that does not exist.
        MissingApiKeyError: no key in the config and none passed as ``api_key``.
    """

    def __init__(self, config: ModelConfig, *, api_key: Optional[str] = None) -> None:
        key = api_key if api_key is not None else config.api_key
        if not key:
            raise MissingApiKeyError(
                f"{_CONFIG_KEY}.api_key is empty: set COWORK_LLM_API_KEY or model.api_key in config.toml"
            )
        _http.check_transport(config.base_url, config.host, config.allow_insecure_http, key=_CONFIG_KEY)
        if config.ca_bundle is not None and not os.path.exists(config.ca_bundle):
            raise ConfigError(f"{_CONFIG_KEY}.ca_bundle {config.ca_bundle!r} does not exist: "
                                "give the path of a PEM file (or directory) of CA certificates")
        self.config = config
        self.name = f"{PROVIDER}:{config.model_name}"
        # The one place the key lives; read once per request, so a key rotation can
        # replace it between requests.
        self._api_key = key
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._timeout = _http.request_timeouts(config.timeout_seconds)
        self._verify = config.ca_bundle if config.ca_bundle else True
        self._sessions = _http.SessionPool()

    # --- the Llm interface -------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
    ) -> ChatResult:
        """One request, one answer.

        Raises:
            ValueError: bad messages, temperature or max_tokens (before any request).
            LlmApiError: the subclass for what failed (see :mod:`cowork_llm.errors`).
        """
        body = self.request_body(messages, temperature=temperature, max_tokens=max_tokens)
        response = self._send(body)
        return parse_chat_response(response, fallback_model=self.config.model_name, secrets=self._secrets())

    def close(self) -> None:
        """Close the HTTP sessions of every thread. Safe to call twice."""
        self._sessions.close()

    # --- request building and sending (shared with a future stream()) --------------------

    def request_body(
        self,
        messages: Sequence[Message],
        *,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        stream: bool = False,
    ) -> Dict[str, Any]:
        """The JSON body; options that are unset here and in the config are left out.

        Raises:
            ValueError: bad messages, temperature (0 to 2) or max_tokens (at least 1).
        """
        checked = validate_messages(messages)
        temperature = _check_temperature(temperature) if temperature is not None else self.config.temperature
        max_tokens = _check_max_tokens(max_tokens) if max_tokens is not None else self.config.max_tokens
        body: Dict[str, Any] = {"model": self.config.model_name, "messages": checked}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
        return body

    def _send(self, body: Mapping[str, Any], *, stream: bool = False) -> requests.Response:
        """POST ``body``; return a 2xx response (its body already read unless ``stream``).

        Raises:
            LlmApiError: the mapped error for a transport failure or a non-2xx status.
        """
        api_key = self._api_key
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        started = time.monotonic()
        try:
            response = self._sessions.get().post(
                self._url, json=body, headers=headers, timeout=self._timeout,
                verify=self._verify, stream=stream,
            )
            if not stream:
                response.content  # noqa: B018 -- read now, so a drop mid-body is a connection error
        except requests.RequestException as exc:
            raise _http.error_for_exception(
                exc, provider=PROVIDER, url=self._url, timeout=self._timeout, secrets=self._secrets()
            ) from exc
        logger.debug("POST %s (model %s): HTTP %s in %.3f s", self._url, self.config.model_name,
                     response.status_code, time.monotonic() - started)
        if not 200 <= response.status_code < 300:
            error = _http.error_for_response(response, provider=PROVIDER, secrets=self._secrets())
            response.close()
            raise error
        return response

    def _secrets(self) -> Tuple[str, ...]:
        return (self._api_key,) + self.config.api_keys


def parse_chat_response(response: requests.Response, *, fallback_model: str,
                        secrets: Sequence[str] = ()) -> ChatResult:
    """The :class:`ChatResult` of a 2xx chat-completions response. Tolerates what
    compatible servers omit (usage, id, logprobs, refusal, system_fingerprint).

    Raises:
        InvalidResponseError: not JSON, no usable choice, or a null content that no
            finish_reason explains.
    """
    request_id = _http.request_id_of(response.headers)

    def invalid(what: str) -> InvalidResponseError:
        shown = _http.redact(f"{PROVIDER} sent an unusable answer: {what}", secrets)
        return InvalidResponseError(shown, status_code=response.status_code, request_id=request_id)

    try:
        body = response.json()
    except ValueError:
        raise invalid(f"not JSON: {_http.provider_message(response)}") from None
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise invalid(f"no choices in {_http.provider_message(response)}")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise invalid("the first choice has no message")
    finish_reason = choice.get("finish_reason")
    finish_reason = finish_reason if isinstance(finish_reason, str) else None
    content = _content_text(message.get("content"))
    if content is None:
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise invalid(f"the model refused: {refusal[:_http.MAX_MESSAGE_CHARS]}")
        if finish_reason not in _EXPLAINED_EMPTY:
            raise invalid(f"the message has no content (finish_reason {finish_reason!r})")
        content = ""
    model = body.get("model")
    body_id = body.get("id")
    return ChatResult(
        content=content,
        model=model if isinstance(model, str) and model else fallback_model,
        finish_reason=finish_reason,
        usage=_usage(body.get("usage")),
        request_id=request_id or (body_id if isinstance(body_id, str) else None),
        raw=body,
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
    """Usage when the counts are there and are integers; otherwise None."""
    if not isinstance(raw, dict):
        return None
    prompt, completion, total = (raw.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not (_is_count(prompt) and _is_count(completion)):
        return None
    return Usage(prompt, completion, total if _is_count(total) else prompt + completion)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_temperature(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise ValueError(f"temperature must be a number from 0 to 2, got {value!r}")
    return value


def _check_max_tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_tokens must be an integer of at least 1, got {value!r}")
    return value
