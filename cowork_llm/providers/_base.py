"""HttpProvider: what the OpenAI and Anthropic clients share above the wire format —
settings checks, the key rotation, sending one request, and turning a streamed response
into a :class:`~cowork_llm.streaming.ChatStream`.

One call is exactly one HTTP attempt: no retry and no rate limit here; the rate limiter
and :mod:`cowork_llm.retry` wrap it.
"""

import json
import logging
import os
import time
from abc import abstractmethod
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
)

import requests

from ..config._sections import ModelConfig
from ..errors import (
    ApiConnectionError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    KeyRejectedError,
    LlmApiError,
    MissingApiKeyError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ..llm import Llm
from ..messages import Message, validate_messages
from ..options import ChatOptions
from ..results import ChatResult
from ..secrets import KEYRING_PREFIX
from ..streaming import ChatStream, StreamState
from ..structured import with_parsed
from . import _http, _sse
from ._keys import KeyRotation

if TYPE_CHECKING:
    from ..health import HealthStatus

__all__ = ["HttpProvider", "stream_error", "event_json"]

logger = logging.getLogger(__name__)


# The "type"/"code" of an error object a server sends inside a stream -> our error.
_STREAM_ERROR_TYPES: Dict[str, Type[LlmApiError]] = {
    "rate_limit_error": RateLimitError, "rate_limit_exceeded": RateLimitError,
    "overloaded_error": ServerError, "api_error": ServerError, "server_error": ServerError,
    "authentication_error": AuthenticationError, "permission_error": AuthenticationError,
    "invalid_api_key": AuthenticationError,
    "not_found_error": NotFoundError, "model_not_found": NotFoundError,
    "invalid_request_error": BadRequestError, "request_too_large": BadRequestError,
}


class HttpProvider(Llm):
    """Base of the HTTP clients. Safe to share between threads: each thread gets its own
    HTTP session, and the key rotation is locked.

    Subclasses set ``PROVIDER`` and ``PATH`` and write :meth:`_body`,
    :meth:`_headers`, :meth:`_parse_response` and :meth:`_read_stream`.

    Raises (at construction):
        MissingApiKeyError: no key in the config and none passed as ``api_key``, or a
            ``keyring:`` reference that was never resolved.
        ConfigError: plain ``http://`` to a non-loopback host without
            ``allow_insecure_http``, or a ``ca_bundle`` file that does not exist.
    """

    PROVIDER: ClassVar[str] = ""
    PATH: ClassVar[str] = ""

    def __init__(self, config: ModelConfig, *, api_key: Optional[str] = None,
                 section: str = "llm.model") -> None:
        keys = (api_key,) + tuple(config.extra_api_keys) if api_key is not None else config.api_keys
        if not keys[0]:
            raise MissingApiKeyError(
                f"{section}.api_key is empty: set COWORK_LLM_API_KEY or model.api_key in config.toml",
                key=f"{section}.api_key",
            )
        if any(key.startswith(KEYRING_PREFIX) for key in keys):
            raise MissingApiKeyError(
                f"{section}.api_key is a keyring reference that was not read: build the client with "
                "create_llm_client() or build_provider(), or pass cowork_llm.secrets.resolve_api_keys(config)"
            )
        _http.check_transport(config.base_url, config.host, config.allow_insecure_http, key=section)
        if config.ca_bundle is not None and not os.path.exists(config.ca_bundle):
            raise ConfigError(f"{section}.ca_bundle {config.ca_bundle!r} does not exist: "
                              "give the path of a PEM file (or directory) of CA certificates")
        self.config = config
        self.name = f"{self.PROVIDER}:{config.model_name}"
        # The one place the keys live; read once per request, so a rotation takes
        # effect from the next request on.
        self._keys = KeyRotation(keys, label=section)
        self._url = config.base_url.rstrip("/") + self.PATH
        self._timeout = _http.request_timeouts(config.timeout_seconds)
        self._verify = config.ca_bundle if config.ca_bundle else True
        self._sessions = _http.SessionPool()

    # --- what a wire format defines -------------------------------------------------------

    @abstractmethod
    def _body(self, messages: List[Dict[str, Any]], options: ChatOptions, *, stream: bool) -> Dict[str, Any]:
        """The JSON body for checked messages and options (configured defaults already
        filled in). Raises ValueError for an option or message the API has no place for."""

    @abstractmethod
    def _headers(self, api_key: str) -> Dict[str, str]:
        """The authentication (and version) headers for ``api_key``."""

    @abstractmethod
    def _parse_response(self, response: requests.Response) -> ChatResult:
        """The answer in a 2xx response. Raises InvalidResponseError when unusable."""

    @abstractmethod
    def _read_stream(self, events: Iterator[_sse.SseEvent], state: StreamState) -> Iterator[str]:
        """Text pieces from the events, filling ``state``. Raises the mapped LlmApiError
        for an error event, InvalidResponseError for an unreadable one, and
        ApiConnectionError when the events end before the end event."""

    def _refine_error(self, error: LlmApiError, response: requests.Response,
                      body: Mapping[str, Any]) -> LlmApiError:
        """A chance to turn a mapped error into a more precise one, knowing the body
        sent (OpenAI's wrong token-limit field). The error itself by default."""
        return error

    def request_body(self, messages: Sequence[Message], *, stream: bool = False,
                     **options: Any) -> Dict[str, Any]:
        """The JSON body :meth:`chat` would send (``options`` as :meth:`chat` takes them;
        unset ones from the configuration).

        Raises:
            TypeError: an unknown option.
            ValueError: bad messages or options, or one this provider has no place for.
        """
        return self._body(validate_messages(messages), ChatOptions.of(**options).with_defaults(self.config),
                          stream=stream)

    # --- the Llm interface -----------------------------------------------------------------

    def send(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatResult:
        """One request, one answer (see :meth:`Llm.chat`); ``parsed`` filled in for a
        ``response_format``.

        Raises:
            ValueError: an option or message this provider has no place for (before any request).
            LlmApiError: the subclass for what failed (see :mod:`cowork_llm.errors`).
        """
        options = options.with_defaults(self.config)
        body = self._body(messages, options, stream=False)
        return with_parsed(self._parse_response(self._send(body)), options.response_format)

    def send_stream(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatStream:
        """Send the request and return the answer as it arrives.

        The request is sent, and its status checked, before this returns: connection
        failures and error statuses raise here, where a retry is still possible.

        Raises:
            ValueError: an option or message this provider has no place for (before any request).
            LlmApiError: the mapped error for the request; iterating the stream raises
                the mapped error of a failure mid-stream.
        """
        body = self._body(messages, options.with_defaults(self.config), stream=True)
        response = self._send(body, stream=True)
        state = StreamState(model=self.config.model_name,
                            request_id=_http.request_id_of(response.headers, self._secrets()))
        return ChatStream(self._pieces(response, state), state, response=response)

    def health(self, *, timeout: float = 5.0) -> "HealthStatus":
        """``GET {base_url}/models`` with the key the next request would send (no
        completion quota, no rate-limiter slot). The key stays in here: only the status
        comes out. Raises nothing for a network or HTTP failure."""
        from ..health import HealthStatus, check_health  # health builds on this package

        try:
            api_key = self._keys.current()
        except AuthenticationError as error:  # every key was rejected earlier
            return HealthStatus(False, 0.0, f"{self.config.host}: {error}")
        return check_health(self.config, timeout=timeout, session=self._sessions.get(),
                            api_key=api_key)

    def close(self) -> None:
        """Close the HTTP sessions of every thread. Safe to call twice."""
        self._sessions.close()

    # --- sending ----------------------------------------------------------------------------

    def _send(self, body: Mapping[str, Any], *, stream: bool = False,
              path: Optional[str] = None) -> requests.Response:
        """POST ``body`` with the current key to :attr:`PATH` (or ``path``, e.g.
        ``/embeddings``, under the base URL); return a 2xx response (its body already
        read unless ``stream``). A 429 moves the key rotation on; a 401 removes the key.

        Raises:
            KeyRejectedError: 401, and another key remains (retried at once).
            LlmApiError: the mapped error for a transport failure or a non-2xx status.
        """
        api_key = self._keys.current()
        headers = self._headers(api_key)
        headers["Accept"] = "text/event-stream" if stream else "application/json"
        url = self._url if path is None else self.config.base_url.rstrip("/") + path
        started = time.monotonic()
        try:
            response = self._sessions.get().post(
                url, json=body, headers=headers, timeout=self._timeout,
                verify=self._verify, stream=stream,
            )
            if not stream:
                response.content  # noqa: B018 -- read now, so a drop mid-body is a connection error
        except requests.RequestException as exc:
            raise _http.error_for_exception(
                exc, provider=self.PROVIDER, url=url, timeout=self._timeout, secrets=self._secrets()
            ) from exc
        logger.debug("POST %s (model %s%s): HTTP %s in %.3f s", url, self.config.model_name,
                     ", stream" if stream else "", response.status_code, time.monotonic() - started)
        if not 200 <= response.status_code < 300:
            error = _http.error_for_response(response, provider=self.PROVIDER, secrets=self._secrets())
            error = self._refine_error(error, response, body)
            response.close()
            raise self._rotate_for(error, api_key)
        return response

    def _rotate_for(self, error: LlmApiError, api_key: str) -> LlmApiError:
        """Tell the key rotation about ``error``; the error to raise."""
        if isinstance(error, RateLimitError):
            self._keys.on_rate_limited(api_key)
        elif error.status_code == 401 and self._keys.on_unauthorized(api_key):
            return KeyRejectedError(error.message + "; retrying with the next API key",
                                    status_code=401, request_id=error.request_id, retry_after=0.0)
        return error

    def _pieces(self, response: requests.Response, state: StreamState) -> Iterator[str]:
        """:meth:`_read_stream` over the response, transport failures mapped."""
        try:
            yield from self._read_stream(_sse.iter_response_events(response), state)
        except requests.RequestException as exc:
            error = _http.error_for_exception(
                exc, provider=self.PROVIDER, url=self._url, timeout=self._timeout, secrets=self._secrets()
            )
            if type(error) is ApiConnectionError:  # "could not reach" would mislead: it answered
                detail = _http.redact(f"{type(exc).__name__}: {exc}"[:300], self._secrets())
                error = ApiConnectionError(f"the {self.PROVIDER} stream broke off mid-answer: {detail}")
            error.request_id = state.request_id
            raise error from exc

    def _secrets(self) -> Tuple[str, ...]:
        return self._keys.secrets

    def _stream_ended_early(self, what: str, state: StreamState) -> ApiConnectionError:
        return ApiConnectionError(f"{self.PROVIDER} stream ended before {what}: the connection "
                                  f"was closed mid-answer", request_id=state.request_id)


# --- helpers for the wire formats ---------------------------------------------------------------


def event_json(event: _sse.SseEvent, *, provider: str, request_id: Optional[str],
               secrets: Sequence[str]) -> Dict[str, Any]:
    """The JSON object in an event's data.

    Raises:
        InvalidResponseError: the data is not a JSON object.
    """
    try:
        data = json.loads(event.data)
    except _http.JSON_ERRORS:
        data = None
    if not isinstance(data, dict):
        shown = _http.redact(event.data[:200], secrets)
        raise InvalidResponseError(f"{provider} sent a stream event that is not a JSON object: {shown!r}",
                                   request_id=request_id)
    return data


def stream_error(error: Any, *, provider: str, request_id: Optional[str],
                 secrets: Sequence[str]) -> LlmApiError:
    """The error for an ``{"type", "message"}`` (or OpenAI ``{"type", "code", "message"}``)
    object that arrived inside a stream; ServerError when its type is unknown."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    kinds = [k for k in (error.get("code"), error.get("type")) if isinstance(k, str)]
    cls = next((_STREAM_ERROR_TYPES[k] for k in kinds if k in _STREAM_ERROR_TYPES), ServerError)
    message = error.get("message") if isinstance(error.get("message"), str) else "no message"
    label = kinds[-1] if kinds else "error"
    text = _http.redact(f"{provider} reported an error mid-stream: {label}: {message}"[:600], secrets)
    return cls(text, request_id=request_id)

