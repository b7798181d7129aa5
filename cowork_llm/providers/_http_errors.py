"""Turning HTTP failures into the :mod:`cowork_llm.errors` tree: a non-2xx response by
its status (and body), a transport failure by what requests and urllib3 raised.
"""

import http.client
import logging
import socket
import ssl
from typing import Any, Iterable, Mapping, Optional, Tuple, Type, Union
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from ..errors import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    LlmApiError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnknownHostError,
    UntrustedCertificateError,
)
from ._ratelimit_headers import parse_rate_limit_headers, should_retry_header
from ._redact import redact
from ._response_meta import (
    JSON_ERRORS,
    error_object,
    parse_retry_after,
    provider_message,
    request_id_of,
    truncate,
)
from ._sessions import MAX_REDIRECTS
from ._transport import causes, describe_transport_failure

logger = logging.getLogger(__name__)

__all__ = ["error_for_response", "error_for_exception"]


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


def _error_of(response: requests.Response) -> Mapping[str, Any]:
    """The body's ``{"error": {...}}`` object; empty when the body is not one."""
    try:
        return error_object(response.json())
    except JSON_ERRORS:
        return {}


def _is_quota_error(response: requests.Response) -> bool:
    error = _error_of(response)
    return "insufficient_quota" in (error.get("code"), error.get("type"))


# llama.cpp's answer to an image (or audio) part when the server was started without a
# multimodal projector: a 500 {"error": {"message": "image input is not supported - hint:
# if this is unexpected, you may need to provide the mmproj", "type": "server_error"}}
# (docs/llamacpp-notes.md). The same request gets it every time: retrying only delays it
# (it stays a ServerError, so a fallback model, which may read images, is still tried).
_UNSUPPORTED_INPUT = "input is not supported"
_UNSUPPORTED_INPUT_HINT = (" (this server cannot read that input, so the request is not retried: "
                           "send images to a vision model; llama.cpp's llama-server reads them "
                           "with a multimodal projector, --mmproj)")


def _is_unsupported_input(response: requests.Response) -> bool:
    message = _error_of(response).get("message")
    return isinstance(message, str) and _UNSUPPORTED_INPUT in message


def error_for_response(response: requests.Response, *, provider: str, secrets: Iterable[str]) -> LlmApiError:
    """The error for a non-2xx response, carrying the provider's message (secrets
    redacted), status, request id, Retry-After, x-should-retry and rate-limit headers.
    A 5xx saying the server cannot read the request's input (an image sent to a
    text-only llama.cpp) gets ``should_retry = False``: every attempt would get it."""
    status = response.status_code
    cls = _error_class(status, response)
    message = redact(f"{provider} answered HTTP {status}: {provider_message(response)}", secrets)
    unsupported = status >= 500 and _is_unsupported_input(response)
    if unsupported:
        message += _UNSUPPORTED_INPUT_HINT
    error = cls(
        message,
        status_code=status,
        request_id=request_id_of(response.headers, secrets),
        retry_after=parse_retry_after(response.headers),
    )
    error.should_retry = False if unsupported else should_retry_header(response.headers)
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
    detail = redact(truncate(f"{type(exc).__name__}: {exc}"), secrets)
    host = urlsplit(url).hostname or url
    chain = list(causes(exc))
    if isinstance(exc, requests.TooManyRedirects):
        return InvalidResponseError(f"too many redirects from {host} (more than {MAX_REDIRECTS}, starting at "
                                    f"{url}): check base_url; it should point at the API itself")
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = redact(truncate(cause.verify_message or str(cause)), secrets)
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
    phrase = describe_transport_failure(exc, timeout[0], host)
    return ApiConnectionError(f"could not reach {provider} at {url}: {redact(phrase, secrets)}")
