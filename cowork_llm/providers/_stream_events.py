"""Helpers for the wire formats' stream readers: the JSON object in a server-sent
event, and the error for an error object that arrived inside a stream.
"""

import json
from typing import Any, Dict, Optional, Sequence, Type

from ..errors import (
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    LlmApiError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ._redact import redact
from ._response_meta import JSON_ERRORS
from ._sse import SseEvent

__all__ = ["event_json", "stream_error"]


# The "type"/"code" of an error object a server sends inside a stream -> our error.
_STREAM_ERROR_TYPES: Dict[str, Type[LlmApiError]] = {
    "rate_limit_error": RateLimitError, "rate_limit_exceeded": RateLimitError,
    "overloaded_error": ServerError, "api_error": ServerError, "server_error": ServerError,
    "authentication_error": AuthenticationError, "permission_error": AuthenticationError,
    "invalid_api_key": AuthenticationError,
    "not_found_error": NotFoundError, "model_not_found": NotFoundError,
    "invalid_request_error": BadRequestError, "request_too_large": BadRequestError,
}


def event_json(event: SseEvent, *, provider: str, request_id: Optional[str],
               secrets: Sequence[str]) -> Dict[str, Any]:
    """The JSON object in an event's data.

    Raises:
        InvalidResponseError: the data is not a JSON object.
    """
    try:
        data = json.loads(event.data)
    except JSON_ERRORS:
        data = None
    if not isinstance(data, dict):
        shown = redact(event.data[:200], secrets)
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
    text = redact(f"{provider} reported an error mid-stream: {label}: {message}"[:600], secrets)
    return cls(text, request_id=request_id)

