"""What every HTTP provider shares: sessions, transport checks, and turning HTTP
failures into the :mod:`cowork_llm.errors` tree.

Nothing here knows a wire protocol; ``openai.py`` (and later ``anthropic.py``) build
requests and parse answers on top of it.
"""

import datetime
import email.utils
import http.client
import ipaddress
import itertools
import json
import logging
import re
import socket
import ssl
import threading
import time
import weakref
import zlib
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Type, Union
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from .._version import __version__
from ..errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidResponseError,
    LlmApiError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnknownHostError,
    UntrustedCertificateError,
)
from . import _body, _guard
from ._ratelimit_headers import parse_rate_limit_headers, should_retry_header

logger = logging.getLogger(__name__)

__all__ = [
    "USER_AGENT",
    "SessionPool",
    "new_session",
    "check_transport",
    "request_timeouts",
    "parse_retry_after",
    "request_id_of",
    "body_request_id",
    "error_object",
    "provider_message",
    "redact",
    "error_for_response",
    "error_for_exception",
]

USER_AGENT = f"cowork-llm/{__version__}"
MAX_MESSAGE_CHARS = 500
#: How much of an error response is read: enough for any provider's message.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Redirects followed before giving up (each one carries the request and, on the same
#: host, its key: requests' default of 30 sent the key 31 times around a loop).
MAX_REDIRECTS = 5
MAX_REQUEST_ID_CHARS = 200
# json raises RecursionError, not ValueError, for a body nested thousands deep.
JSON_ERRORS = (ValueError, RecursionError)
_REDACTED = "[REDACTED]"
# mask_secret shows 7 characters of a key ("sk-" and the last 4); 8 in a row is a leak.
_MIN_SECRET_PIECE = 8
_MAX_CONNECT_TIMEOUT = 10.0


# --- transport -------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(base_url: str, host: str, allow_insecure_http: bool, *, key: str) -> None:
    """Refuse to send an API key in clear text over the network.

    Raises:
        ConfigError: ``base_url`` is ``http://`` to a host that is not loopback and
            ``allow_insecure_http`` is off. ``key`` names the setting in the message.
    """
    if base_url.lower().startswith("https://") or allow_insecure_http or _is_loopback(host):
        return
    raise ConfigError(
        key=f"{key}.base_url",
        message=f"{key}.base_url {base_url!r} is plain http to {host!r}, which would send the API key "
        f"unencrypted: use https://, or set {key}.allow_insecure_http = true if the network "
        "is trusted"
    )


def request_timeouts(timeout_seconds: float, remaining: Optional[float] = None) -> Tuple[float, float]:
    """(connect, read) timeouts for each socket operation: a dead host is noticed within
    10 s even when a slow answer may take minutes; neither outlasts ``remaining`` (the
    attempt's deadline, which :mod:`._guard` enforces for the attempt as a whole)."""
    read = timeout_seconds if remaining is None else max(0.001, min(timeout_seconds, remaining))
    return (min(_MAX_CONNECT_TIMEOUT, read), read)


# Headers that carry a key. requests drops Authorization on a redirect to another host,
# but knows nothing of Anthropic's x-api-key (measured: forwarded on a 307/308).
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


class _KeySafeSession(requests.Session):
    """A Session that drops every credential header where requests drops Authorization:
    on a redirect to another host, port or scheme."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if response.request.url and prepared_request.url and self.should_strip_auth(
                response.request.url, prepared_request.url):
            for name in CREDENTIAL_HEADERS:
                prepared_request.headers.pop(name, None)


class _SessionEntry:
    """A thread's session, held by that thread's local storage only: when the thread
    ends, the entry is freed and its finalizer closes the session (see SessionPool)."""

    __slots__ = ("generation", "session", "__weakref__")

    def __init__(self, generation: int, session: requests.Session) -> None:
        self.generation = generation
        self.session = session


def new_session() -> requests.Session:
    """A session as the providers use it: our User-Agent, only the encodings _body can
    inflate within a cap, few redirects, and connections a _guard.Guard can cut."""
    session = _KeySafeSession()
    session.headers["User-Agent"] = USER_AGENT
    # Only what _body can inflate within a cap (brotli or zstd would be decoded by urllib3
    # in one piece, whatever the size).
    session.headers["Accept-Encoding"] = _body.ACCEPT_ENCODING
    session.max_redirects = MAX_REDIRECTS
    adapter = _guard.GuardedAdapter()  # connections a deadline can cut (see _guard)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _close_session(sessions: Dict[int, requests.Session], key: int) -> None:
    session = sessions.pop(key, None)  # dict.pop is atomic: no lock, as this may run anywhere
    if session is not None:
        session.close()


class SessionPool:
    """One :class:`requests.Session` per live thread (requests does not promise a Session
    is thread-safe), each keeping its connections alive.

    A thread that ends takes its session with it: the session (and its sockets) is closed
    as the thread's local storage is freed, so a program that starts a short-lived thread
    per job does not pile up sockets until it runs out of file descriptors.
    :meth:`close` closes the sessions of every thread; a thread that makes a request
    after it gets a fresh session.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: Dict[int, requests.Session] = {}
        self._keys = itertools.count()
        self._generation = 0  # bumped by close(), so threads drop their closed session

    def get(self) -> requests.Session:
        """This thread's session, created on first use."""
        cached = getattr(self._local, "entry", None)
        if cached is not None and cached.generation == self._generation:
            return cached.session  # type: ignore[no-any-return]
        session = new_session()
        key = next(self._keys)
        entry = _SessionEntry(self._generation, session)
        weakref.finalize(entry, _close_session, self._sessions, key)
        with self._lock:
            self._sessions[key] = session
        self._local.entry = entry
        return session

    def __len__(self) -> int:
        """How many sessions are open (one per live thread that made a request)."""
        return len(self._sessions)

    def close(self) -> None:
        """Close every session of every thread. Safe to call twice."""
        with self._lock:
            self._generation += 1
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()


# --- response metadata -----------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds the server asked us to wait, or None when it did not say (or said nonsense).

    Reads ``retry-after-ms`` (OpenAI, milliseconds) first, then ``Retry-After`` as
    seconds or as an HTTP date (RFC 9110; a date without a zone is GMT, as that RFC
    says of every HTTP date). A date in the past means 0.
    """
    headers = _lower_keys(headers)
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = _non_negative_number(millis)
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 (5.6.7): every HTTP date is GMT, and a recipient must accept the
        # asctime form, which names no zone ("Sun Nov  6 08:49:37 1994"); read as local
        # time it would be hours off on most machines.
        when = when.replace(tzinfo=datetime.timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _lower_keys(headers: Mapping[str, str]) -> Mapping[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _non_negative_number(text: str) -> Optional[float]:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    if number != number or number < 0 or number == float("inf"):  # NaN, negative, inf
        return None
    return number


def request_id_of(headers: Mapping[str, str], secrets: Iterable[str] = ()) -> Optional[str]:
    """The provider's request id (``x-request-id``; Anthropic sends ``request-id``),
    cut to MAX_REQUEST_ID_CHARS with ``secrets`` redacted: it goes into error messages,
    and a misbehaving proxy may echo a header back in it."""
    if not isinstance(headers, requests.structures.CaseInsensitiveDict):  # a response's already is
        headers = _lower_keys(headers)
    value = headers.get("x-request-id") or headers.get("request-id")
    return redact(value[:MAX_REQUEST_ID_CHARS], secrets) if value else None


def body_request_id(body: Any, secrets: Iterable[str]) -> Optional[str]:
    """The ``id`` of a response body, treated like a request id header."""
    value = body.get("id") if isinstance(body, dict) else None
    return redact(value[:MAX_REQUEST_ID_CHARS], secrets) if isinstance(value, str) and value else None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced (a provider may echo the key back), and every
    run of ``_MIN_SECRET_PIECE`` or more of a secret's characters too (one may echo the
    key without its prefix, or cut short). A secret shorter than that is replaced only
    where it stands as a whole token: a key ``k`` must not turn "ok" into "o[REDACTED]"."""
    for secret in secrets:
        if not secret:
            continue
        if len(secret) < _MIN_SECRET_PIECE:
            text = re.sub(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", _REDACTED, text)
        else:
            text = _redact_pieces(text.replace(secret, _REDACTED), secret)
    return text


def _redact_pieces(text: str, secret: str) -> str:
    if len(secret) < _MIN_SECRET_PIECE:
        return text
    out: List[str] = []
    i = 0
    while i < len(text):
        end = i + _MIN_SECRET_PIECE
        if end <= len(text) and text[i:end] in secret:
            while end < len(text) and text[i:end + 1] in secret:
                end += 1
            out.append(_REDACTED)
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        return text[:MAX_MESSAGE_CHARS] + "…"
    return text


def error_object(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return error
    return {}


def provider_message(response: requests.Response) -> str:
    """The provider's own explanation: ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"message": ...}``, or the plain text body, truncated. Not redacted."""
    text = response.text or ""
    try:
        body = json.loads(text)
    except JSON_ERRORS:
        body = None
    message: Any = error_object(body).get("message")
    if not message and isinstance(body, Mapping):
        message = body.get("error") if isinstance(body.get("error"), str) else body.get("message")
    if not isinstance(message, str) or not message.strip():
        message = text.strip() or response.reason or "no message"
    return _truncate(message)


def _is_quota_error(response: requests.Response) -> bool:
    try:
        error = error_object(response.json())
    except JSON_ERRORS:
        return False
    return "insufficient_quota" in (error.get("code"), error.get("type"))


def read_error_body(response: requests.Response) -> bytes:
    """Read at most MAX_ERROR_BODY_BYTES of an error response (its message is all we
    show); a longer body is cut and its connection dropped. Unreadable bytes (corrupt
    or unexpected compression) leave an empty body. Raises what the transport raises."""
    try:
        return _body.read_body(response, MAX_ERROR_BODY_BYTES, truncate=True)
    except (_body.UnsupportedEncoding, zlib.error):
        response.close()
        response._content = b""
        return b""


def check_utf8(response: requests.Response, *, provider: str) -> None:
    """Make the body's text strict UTF-8: requests would decode invalid bytes as U+FFFD
    and let a damaged answer through. A charset the server declared is left to requests.

    Raises:
        InvalidResponseError: no other charset declared, and the body is not UTF-8.
    """
    charset = _declared_charset(response.headers.get("Content-Type", ""))
    if charset not in (None, "utf-8", "utf8"):
        return
    try:
        response.content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidResponseError(
            f"{provider} sent an answer that is not valid UTF-8 (byte {response.content[exc.start]:#04x} "
            f"at position {exc.start}) and declared no other charset",
            status_code=response.status_code, request_id=request_id_of(response.headers)) from None
    response.encoding = "utf-8"


def _declared_charset(content_type: str) -> Optional[str]:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() or None
    return None


# --- errors ----------------------------------------------------------------------------


def _error_class(status: int, response: requests.Response) -> Type[LlmApiError]:
    if status in (400, 422):
        return BadRequestError
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 408:  # the server gave up waiting for our request: a timeout
        return ApiTimeoutError
    if status == 429:
        return QuotaExceededError if _is_quota_error(response) else RateLimitError
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return BadRequestError
    return InvalidResponseError  # 1xx/3xx that requests did not resolve


def error_for_response(response: requests.Response, *, provider: str, secrets: Iterable[str]) -> LlmApiError:
    """The error for a non-2xx response, carrying the provider's message (secrets
    redacted), status, request id, Retry-After, x-should-retry and rate-limit headers."""
    status = response.status_code
    cls = _error_class(status, response)
    message = redact(f"{provider} answered HTTP {status}: {provider_message(response)}", secrets)
    error = cls(
        message,
        status_code=status,
        request_id=request_id_of(response.headers, secrets),
        retry_after=parse_retry_after(response.headers),
    )
    error.should_retry = should_retry_header(response.headers)
    error.rate_limits = parse_rate_limit_headers(response.headers)
    return error


def _is_read_timeout(exc: BaseException) -> bool:
    # A timeout while reading the body reaches us as requests.ConnectionError wrapping
    # urllib3's ReadTimeoutError, not as requests.ReadTimeout.
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 10:
        # Not urllib3's TimeoutError: its NewConnectionError (connection refused) is one.
        if isinstance(current, (requests.Timeout, urllib3.exceptions.ReadTimeoutError)):
            return True
        nested: Union[BaseException, None] = None
        if current.args and isinstance(current.args[0], BaseException):
            nested = current.args[0]
        current = nested or current.__cause__ or current.__context__
        seen += 1
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests nests urllib3's errors in ``args[0]``, urllib3
    its causes in ``reason``."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 12:
        yield current
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        reason = getattr(current, "reason", None)
        if not isinstance(reason, BaseException):
            reason = None
        current = nested or reason or current.__cause__ or current.__context__
        seen += 1


# getaddrinfo's answers for a name that does not exist (EAI_AGAIN, a DNS server that did
# not answer in time, is left retryable).
_NO_SUCH_HOST = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


def error_for_exception(exc: requests.RequestException, *, provider: str, url: str,
                        timeout: Tuple[float, float], secrets: Iterable[str]) -> LlmApiError:
    """The error for a transport failure:

    - ApiTimeoutError for a connect/read timeout;
    - UntrustedCertificateError when TLS verification failed, UnknownHostError when the
      host name does not exist, InvalidResponseError for a redirect loop or a response
      header too large (none of them retried: another attempt meets the same answer);
    - ApiConnectionError for every other failure (refused, reset, dropped mid-body,
      a DNS server that did not answer).
    """
    detail = redact(_truncate(f"{type(exc).__name__}: {exc}"), secrets)
    host = urlsplit(url).hostname or url
    chain = list(_causes(exc))
    if isinstance(exc, requests.TooManyRedirects):
        return InvalidResponseError(f"too many redirects from {host} (more than {MAX_REDIRECTS}, starting at "
                                    f"{url}): check base_url; it should point at the API itself")
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = redact(_truncate(cause.verify_message or str(cause)), secrets)
            return UntrustedCertificateError(
                f"the certificate of {host} is not trusted ({url}): {reason}. If a private authority "
                "signed it, set model.ca_bundle to that authority's PEM file")
        if isinstance(cause, socket.gaierror) and cause.errno in _NO_SUCH_HOST:
            return UnknownHostError(f"{host} does not resolve (DNS: {cause.strerror}): check base_url")
        if isinstance(cause, http.client.LineTooLong) or (
                isinstance(cause, http.client.HTTPException) and "got more than" in str(cause)):
            return InvalidResponseError(f"the response header from {host} is too large ({cause}); "
                                        "the connection was dropped")
    # urllib3's own text (pool, retries, the socket) goes to the debug log; the error says
    # what happened in one phrase.
    logger.debug("%s at %s: %s", provider, url, detail)
    if _is_read_timeout(exc):
        return ApiTimeoutError(
            f"{provider} did not answer in time (connect {timeout[0]:g} s, read {timeout[1]:g} s) "
            f"at {url}"
        )
    from ._transport import describe_transport_failure  # only a failure needs it

    phrase = describe_transport_failure(exc, timeout[0], host)
    return ApiConnectionError(f"could not reach {provider} at {url}: {redact(phrase, secrets)}")
