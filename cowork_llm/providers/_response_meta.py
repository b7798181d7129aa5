"""What an HTTP response says besides its answer: the Retry-After the server asked for,
its request id, the provider's own message in an error body (read within a bound), and
whether the body is the UTF-8 it should be.
"""

import datetime
import email.utils
import json
import time
import zlib
from typing import Any, Iterable, Mapping, Optional

import requests

from ..errors import InvalidResponseError
from . import _body
from ._redact import redact

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_ERROR_BODY_BYTES",
    "JSON_ERRORS",
    "parse_retry_after",
    "request_id_of",
    "body_request_id",
    "error_object",
    "provider_message",
    "truncate",
    "read_error_body",
    "check_utf8",
]

MAX_MESSAGE_CHARS = 500
#: How much of an error response is read: enough for any provider's message.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_REQUEST_ID_CHARS = 200
# json raises RecursionError, not ValueError, for a body nested thousands deep.
JSON_ERRORS = (ValueError, RecursionError)


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


def truncate(text: str) -> str:
    """``text`` on one line, cut to MAX_MESSAGE_CHARS (an ellipsis marks the cut)."""
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
    return truncate(message)


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
