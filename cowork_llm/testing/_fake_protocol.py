"""The two wire formats FakeLlmServer speaks: request checks, bodies, errors, SSE events.

Shapes follow the OpenAI Chat Completions API (``/v1/chat/completions``) and the
Anthropic Messages API (``/v1/messages``) as documented, including their error bodies.
Pure functions: no sockets here.
"""

import base64
import json
import struct
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._echo import estimate_tokens, hash_vector, split_pieces

OPENAI_ERRORS = {  # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported."),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
}
QUOTA_MESSAGE = ("You exceeded your current quota, please check your plan and billing details.")
ANTHROPIC_ERRORS = {  # status -> (type, message)
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    529: ("overloaded_error", "Overloaded"),
}
ANTHROPIC_CREDIT_MESSAGE = ("Your credit balance is too low to access the Anthropic API. "
                            "Please go to Plans & Billing to upgrade or purchase credits.")


class ApiProblem(Exception):
    """An error answer, rendered in the shape of the API that was called."""

    def __init__(self, status: int, message: Optional[str] = None, code: Optional[str] = None, *,
                 param: Optional[str] = None) -> None:
        super().__init__(message or f"status {status}")
        self.status, self.message, self.code, self.param = status, message, code, param


def openai_error(status: int, message: Optional[str] = None, code: Optional[str] = None,
                 param: Optional[str] = None) -> Dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI sends it."""
    if code == "insufficient_quota":
        return {"error": {"message": message or QUOTA_MESSAGE, "type": "insufficient_quota",
                          "param": None, "code": "insufficient_quota"}}
    default = OPENAI_ERRORS.get(status) or (
        ("server_error", None, "The server had an error while processing your request.")
        if status >= 500 else ("invalid_request_error", None, f"Request failed with status {status}."))
    kind, default_code, default_message = default
    return {"error": {"message": message or default_message, "type": kind, "param": param,
                      "code": code if code is not None else default_code}}


#: Anthropic's error types (https://docs.anthropic.com/en/api/errors): a code given to
#: :func:`anthropic_error` that is not one of them is OpenAI vocabulary and is replaced by
#: the type of the status.
ANTHROPIC_ERROR_TYPES = frozenset({"invalid_request_error", "authentication_error", "permission_error",
                                   "not_found_error", "request_too_large", "rate_limit_error", "api_error",
                                   "overloaded_error", "billing_error", "timeout_error"})


def anthropic_error(status: int, message: Optional[str] = None, code: Optional[str] = None,
                    request_id: Optional[str] = None) -> Dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` as Anthropic sends it."""
    if code == "insufficient_quota":  # Anthropic's "out of credit" is a 400
        kind, message = "invalid_request_error", message or ANTHROPIC_CREDIT_MESSAGE
    else:
        kind, default_message = ANTHROPIC_ERRORS.get(status) or (
            ("api_error", "Internal server error") if status >= 500
            else ("invalid_request_error", f"Request failed with status {status}."))
        kind = code if code in ANTHROPIC_ERROR_TYPES else kind
        message = message or default_message
    body: Dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def _check_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiProblem(400, "you must provide a model parameter")
    return model


def apply_stop(text: str, stops: Tuple[str, ...]) -> Tuple[str, Optional[str]]:
    """``text`` cut before the first stop sequence in it, and that sequence (None when
    none occurs), as the real APIs stop."""
    found = [(text.find(stop), stop) for stop in stops if stop and stop in text]
    if not found:
        return text, None
    index, stop = min(found)
    return text[:index], stop


def truncate(text: str, max_tokens: Optional[int]) -> "tuple[str, bool]":
    """Cut ``text`` to ``max_tokens`` (4 characters a token); True when it was cut."""
    if max_tokens is None or estimate_tokens(text) <= max_tokens:
        return text, False
    return text[: max_tokens * 4], True


def openai_completion(rid: str, model: str, text: Optional[str], finish: str,
                      prompt_tokens: int) -> Dict[str, Any]:
    """A chat.completion body; ``text=None`` gives one without choices."""
    choices = [] if text is None else [{
        "index": 0,
        "message": {"role": "assistant", "content": text, "refusal": None},
        "logprobs": None,
        "finish_reason": finish,
    }]
    completion = 0 if text is None else estimate_tokens(text)
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "system_fingerprint": "fp_fake",
            "usage": openai_usage(prompt_tokens, completion)}


def openai_usage(prompt_tokens: int, completion_tokens: int) -> Dict[str, Any]:
    """A usage object with its details, as OpenAI sends them (nothing cached, no
    reasoning: the fake does neither)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def sse(data: Any, event: Optional[str] = None) -> bytes:
    """One server-sent event."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def openai_stream(rid: str, model: str, text: str, finish: str, prompt_tokens: int,
                  include_usage: bool) -> List[bytes]:
    """The chat.completion.chunk events, ending with ``data: [DONE]``."""
    created = int(time.time())

    def chunk(delta: Dict[str, Any], finish_reason: Optional[str] = None) -> bytes:
        body: Dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created,
                                "model": model, "system_fingerprint": "fp_fake",
                                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]}
        if include_usage:
            body["usage"] = None
        return sse(body)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in split_pieces(text) if piece]
    events.append(chunk({}, finish))
    if include_usage:
        completion = estimate_tokens(text)
        events.append(sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                           "model": model, "system_fingerprint": "fp_fake", "choices": [],
                           "usage": openai_usage(prompt_tokens, completion)}))
    events.append(sse("[DONE]"))
    return events


def anthropic_message(rid: str, model: str, text: Optional[str], stop: str,
                      input_tokens: int, stop_sequence: Optional[str] = None) -> Dict[str, Any]:
    """A Messages API body; ``text=None`` gives one without content blocks."""
    content = [] if text is None else [{"type": "text", "text": text}]
    return {"id": rid, "type": "message", "role": "assistant", "content": content, "model": model,
            "stop_reason": stop, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0,
                      "output_tokens": 0 if text is None else estimate_tokens(text)}}


def anthropic_stream(rid: str, model: str, text: str, stop: str, input_tokens: int,
                     stop_sequence: Optional[str] = None) -> List[bytes]:
    """message_start, content_block_start, ping, text deltas, content_block_stop,
    message_delta (with usage), message_stop."""
    start = anthropic_message(rid, model, "", "", input_tokens)
    start.update(content=[], stop_reason=None)
    start["usage"]["output_tokens"] = 1
    events = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start"),
        sse({"type": "ping"}, "ping"),
    ]
    events += [sse({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
               for piece in split_pieces(text) if piece]
    events += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": stop_sequence},
             "usage": {"output_tokens": estimate_tokens(text)}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return events



@dataclass(frozen=True)
class EmbeddingsRequest:
    """An embeddings request, after the checks."""

    model: str
    inputs: List[str]
    encoding_format: str
    dimensions: Optional[int]


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    """Check an embeddings request (``input`` a string or 1 to 2048 strings, no empty
    string; ``encoding_format`` float or base64; ``dimensions`` at least 1). Raises
    ApiProblem(400) like the real API. Token-array inputs are not served."""
    if not isinstance(body, dict):
        raise ApiProblem(400, "We could not parse the JSON body of your request.")
    model = _check_model(body)
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise ApiProblem(400, "'input' is a required property and must be a string or a non-empty "
                              "array of strings.")
    if len(inputs) > 2048:
        raise ApiProblem(400, f"'input' has {len(inputs)} items; the maximum is 2048.")
    if any(not text for text in inputs):
        raise ApiProblem(400, "'$.input' is invalid. Please check the API reference: "
                              "https://platform.openai.com/docs/api-reference.")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ApiProblem(400, f"Invalid value for 'encoding_format': {encoding!r}. "
                              "Supported values are: 'float' and 'base64'.")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)
                                   or dimensions < 1):
        raise ApiProblem(400, "Invalid value for 'dimensions': must be an integer of at least 1.")
    return EmbeddingsRequest(model, inputs, encoding, dimensions)


def embeddings_response(request: EmbeddingsRequest, *, empty: bool = False) -> Dict[str, Any]:
    """A ``list`` of ``embedding`` objects (vectors from a hash of each text, as float
    lists or base64 float32), with usage; ``empty`` gives no data."""
    data = []
    for index, text in enumerate([] if empty else request.inputs):
        vector = hash_vector(text, request.dimensions)
        embedding: Any = vector
        if request.encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(estimate_tokens(text) for text in request.inputs)
    return {"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
