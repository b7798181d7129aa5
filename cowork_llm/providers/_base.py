"""HttpProvider: what the OpenAI and Anthropic clients share above the wire format —
the key rotation, sending one request within its deadline, and turning a streamed
response into a :class:`~cowork_llm.streaming.ChatStream`.

One call is exactly one HTTP attempt: no retry and no rate limit here; the rate limiter
and :mod:`cowork_llm.retry` wrap it.
"""

import logging
import time
import zlib
from abc import abstractmethod
from dataclasses import replace
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import requests
import requests.auth

from .. import _deadline
from ..config._sections import ModelConfig
from ..errors import (
    ApiConnectionError,
    ApiTimeoutError,
    ClientClosedError,
    InvalidResponseError,
    KeyRejectedError,
    LlmApiError,
    MissingApiKeyError,
    RateLimitError,
)
from ..llm import Llm
from ..request._messages import Message, validate_messages
from ..request._options import ChatOptions
from ..request._structured import with_parsed
from ..results import ChatResult
from ..secrets import KEYRING_PREFIX
from ..streaming import ChatStream, StreamState
from . import _body, _guard, _sse
from ._http_errors import error_for_exception, error_for_response
from ._keys import KeyAuth, KeyRotation
from ._ratelimit_headers import parse_rate_limit_headers
from ._redact import redact
from ._response_meta import check_utf8, read_error_body, request_id_of
from ._sessions import SessionPool, request_timeouts
from ._settings import check_model_settings

if TYPE_CHECKING:
    from ..health import HealthStatus

__all__ = ["HttpProvider"]

logger = logging.getLogger(__name__)


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
        check_model_settings(config, section)
        self.config = config
        self.name = f"{self.PROVIDER}:{config.model_name}"
        # The one place the keys live; read once per request, so a rotation takes
        # effect from the next request on.
        self._keys = KeyRotation(keys, label=section)
        self._url = config.base_url.rstrip("/") + self.PATH
        self._verify = config.ca_bundle if config.ca_bundle else True
        self._sessions = SessionPool()
        self._closed = False
        _guard.start_watchdog()  # now, not inside the first request

    # --- what a wire format defines -------------------------------------------------------

    @abstractmethod
    def _body(self, messages: List[Dict[str, Any]], options: ChatOptions, *, stream: bool) -> Dict[str, Any]:
        """The JSON body for checked messages and options (configured defaults already
        filled in). Raises ValueError for an option or message the API has no place for."""

    @abstractmethod
    def _headers(self, api_key: str) -> Dict[str, str]:
        """The authentication (and version) headers for ``api_key``; called by
        :class:`~._keys.KeyAuth` as the request is prepared, so no caller's frame holds them."""

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
        response = self._send(body)
        result = with_parsed(self._parse_response(response), options.response_format)
        report = parse_rate_limit_headers(response.headers)
        return result if report is None else replace(result, rate_limits=report)

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
                            request_id=request_id_of(response.headers, self._secrets()),
                            rate_limits=parse_rate_limit_headers(response.headers),
                            response_format=options.response_format)
        # From here the stream's own bounds apply: no content piece for
        # stream_idle_timeout_seconds, or the whole stream past stream_timeout_seconds.
        config = self.config
        guard = _guard.Guard(
            time.monotonic() + config.stream_timeout_seconds,
            f"it was still streaming after model.stream_timeout_seconds = "
            f"{config.stream_timeout_seconds:g} s",
            idle_seconds=config.stream_idle_timeout_seconds,
            idle_what=f"it sent no content for model.stream_idle_timeout_seconds = "
                      f"{config.stream_idle_timeout_seconds:g} s")
        connection = getattr(response.raw, "connection", None)
        if connection is not None:
            guard.attach(connection)
        return ChatStream(self._pieces(response, state, guard), state, response=response)

    def health(self, *, timeout: float = 5.0) -> "HealthStatus":
        """``GET {base_url}/models`` with the key the next request would send (no
        completion quota, no rate-limiter slot). The key stays in here: only the status
        comes out. Raises nothing for a network or HTTP failure."""
        from ..health import check_health  # health builds on this package

        # current() never raises: the last key stays in the rotation, even when rejected.
        return check_health(self.config, timeout=timeout, session=self._sessions.get(),
                            api_key=self._keys.current())

    def close(self) -> None:
        """Close the HTTP sessions of every thread; later calls raise ClientClosedError.
        A request in flight finishes (its connection is closed when it is given back).
        Safe to call twice."""
        self._closed = True
        self._sessions.close()

    # --- sending ----------------------------------------------------------------------------

    def _send(self, body: Mapping[str, Any], *, stream: bool = False,
              path: Optional[str] = None) -> requests.Response:
        """POST ``body`` with the current key to :attr:`PATH` (or ``path``, e.g.
        ``/embeddings``, under the base URL); return a 2xx response (its body already
        read, within ``max_response_bytes``, unless ``stream``). The whole attempt
        (connect, headers, body) ends within ``timeout_seconds``, or within what is left
        of the call's ``retry.total_timeout_seconds``. A 429 moves the key rotation on;
        a 401 removes the key when another remains.

        Raises:
            ClientClosedError: the client was closed.
            KeyRejectedError: 401, and another key remains (retried at once).
            ApiTimeoutError: the attempt's deadline passed.
            InvalidResponseError: the body is over ``max_response_bytes``, compressed in
                a way we did not ask for, or not UTF-8 without another charset declared.
            LlmApiError: the mapped error for another transport failure or a non-2xx status.
        """
        if self._closed:
            raise ClientClosedError(f"the {self.PROVIDER} client for {self.config.model_name} is "
                                    "closed: create a new client")
        key = self._keys.current_key()  # masked repr: safe in a traceback's locals
        url = self._url if path is None else self.config.base_url.rstrip("/") + path
        guard = self._attempt_guard(url)
        started = time.monotonic()
        try:
            with guard:
                response = self._sessions.get().post(
                    url, json=body, auth=KeyAuth(key, self._headers),
                    headers={"Accept": "text/event-stream" if stream else "application/json"},
                    timeout=request_timeouts(self.config.timeout_seconds, guard.capped_at),
                    verify=self._verify, stream=True,
                )
                ok = 200 <= response.status_code < 300
                if not ok:  # only the message matters: read a little, drop the rest
                    read_error_body(response)
                elif not stream:
                    _body.read_body(response, self.config.max_response_bytes)
        except requests.RequestException as exc:
            guard.done()
            raise self._transport_error(exc, guard, url) from exc
        except _body.BodyTooLarge as exc:
            guard.done()
            raise self._too_large(exc.limit, response) from None
        except (_body.UnsupportedEncoding, zlib.error) as exc:
            guard.done()
            raise InvalidResponseError(f"{self.PROVIDER} sent a body that cannot be read: {exc}",
                                       status_code=response.status_code) from None
        guard.done()  # a stream gets bounds of its own (see stream())
        if guard.expired is not None:  # cut short, though what arrived looked whole
            response.close()
            raise self._transport_error(requests.Timeout(guard.expired), guard, url)
        logger.debug("POST %s (model %s%s): HTTP %s in %.3f s", url, self.config.model_name,
                     ", stream" if stream else "", response.status_code, time.monotonic() - started)
        if not ok:
            error = error_for_response(response, provider=self.PROVIDER, secrets=self._secrets())
            error = self._refine_error(error, response, body)
            response.close()
            raise self._rotate_for(error, key.reveal())
        if not stream:
            check_utf8(response, provider=self.PROVIDER)
        return response

    def _attempt_guard(self, url: str) -> _guard.Guard:
        """The deadline of one attempt: ``timeout_seconds`` from now, or sooner when the
        call's ``retry.total_timeout_seconds`` runs out first."""
        timeout = self.config.timeout_seconds
        what = f"model.timeout_seconds = {timeout:g} s"
        call = _deadline.current()
        now = time.monotonic()
        deadline = now + timeout
        if call is not None and call[0] < deadline:
            deadline = call[0]
            what = f"retry.total_timeout_seconds = {call[1]:g} s for the whole call"
            if deadline <= now:
                raise ApiTimeoutError(f"{self.PROVIDER}: no time left for another attempt at {url} "
                                      f"({what} ran out)")
            guard = _guard.Guard(deadline, what)
            guard.capped_at = deadline - now  # socket timeouts no longer than what is left
            return guard
        return _guard.Guard(deadline, what)

    def _transport_error(self, exc: requests.RequestException, guard: _guard.Guard,
                         url: str) -> LlmApiError:
        if guard.expired is not None:
            return ApiTimeoutError(f"{self.PROVIDER} did not answer in time at {url}: "
                                   f"the attempt was cut off at {guard.expired}")
        return error_for_exception(exc, provider=self.PROVIDER, url=url,
                                         timeout=request_timeouts(self.config.timeout_seconds),
                                         secrets=self._secrets())

    def _too_large(self, limit: int, response: Any) -> InvalidResponseError:
        return InvalidResponseError(
            f"{self.PROVIDER} sent more than model.max_response_bytes = {limit} bytes (after "
            "decompression); the connection was dropped. Raise max_response_bytes if such "
            "answers are expected", status_code=getattr(response, "status_code", None),
            request_id=request_id_of(getattr(response, "headers", {}), self._secrets()))

    def _rotate_for(self, error: LlmApiError, api_key: str) -> LlmApiError:
        """Tell the key rotation about ``error``; the error to raise."""
        if isinstance(error, RateLimitError):
            self._keys.on_rate_limited(api_key)
        elif error.status_code == 401 and self._keys.on_unauthorized(api_key):
            return KeyRejectedError(error.message + "; retrying with the next API key",
                                    status_code=401, request_id=error.request_id, retry_after=0.0)
        return error

    def _pieces(self, response: requests.Response, state: StreamState, guard: _guard.Guard) -> Iterator[str]:
        """:meth:`_read_stream` over the response, within the stream's bounds (``guard``)
        and ``max_response_bytes``; transport failures mapped."""
        limit = self.config.max_response_bytes
        try:
            chunks = _body.iter_decoded(response, limit)
            lines = _sse.iter_lines(chunks, max_line=min(limit, _sse.MAX_LINE_BYTES))
            for piece in self._read_stream(_sse.iter_events(lines), state):
                guard.hold()  # the consumer's time with a piece is not the server's idleness
                yield piece
                guard.touch()
        except (requests.RequestException, ApiConnectionError) as exc:
            if guard.expired is not None:
                raise ApiTimeoutError(f"the {self.PROVIDER} stream was cut off: {guard.expired}",
                                      request_id=state.request_id) from None
            if isinstance(exc, LlmApiError):
                raise
            error = error_for_exception(
                exc, provider=self.PROVIDER, url=self._url,
                timeout=request_timeouts(self.config.timeout_seconds), secrets=self._secrets())
            if type(error) is ApiConnectionError:  # "could not reach" would mislead: it answered
                detail = redact(f"{type(exc).__name__}: {exc}"[:300], self._secrets())
                error = ApiConnectionError(f"the {self.PROVIDER} stream broke off mid-answer: {detail}")
            error.request_id = state.request_id
            raise error from exc
        except _body.BodyTooLarge as exc:
            response.close()
            error = self._too_large(exc.limit, response)
            error.request_id = state.request_id
            raise error from None
        except _sse.LineTooLong as exc:
            response.close()
            raise InvalidResponseError(
                f"the {self.PROVIDER} stream sent a line longer than {exc.limit} bytes; the connection "
                "was dropped", request_id=state.request_id) from None
        except (UnicodeDecodeError, _body.UnsupportedEncoding, zlib.error) as exc:
            response.close()
            raise InvalidResponseError(f"the {self.PROVIDER} stream is not readable text: {exc}"[:300],
                                       request_id=state.request_id) from None
        finally:
            guard.done()

    def _secrets(self) -> Tuple[str, ...]:
        return self._keys.secrets

    def _stream_invalid(self, state: StreamState) -> Callable[[str], InvalidResponseError]:
        """Makes the InvalidResponseError for an unusable part of a stream (tool-call
        arguments that are not JSON), the key redacted."""
        def invalid(what: str) -> InvalidResponseError:
            shown = redact(f"{self.PROVIDER} sent an unusable stream: {what}", self._secrets())
            return InvalidResponseError(shown, request_id=state.request_id)
        return invalid

    def _stream_ended_early(self, what: str, state: StreamState) -> ApiConnectionError:
        return ApiConnectionError(f"{self.PROVIDER} stream ended before {what}: the connection "
                                  f"was closed mid-answer", request_id=state.request_id)
