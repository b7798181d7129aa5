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
from typing import Any, Dict, List, Mapping, Optional

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

    def __init__(self, status: int, message: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message or f"status {status}")
        self.status, self.message, self.code = status, message, code


def openai_error(status: int, message: Optional[str] = None, code: Optional[str] = None) -> Dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI sends it."""
    if code == "insufficient_quota":
        return {"error": {"message": message or QUOTA_MESSAGE, "type": "insufficient_quota",
                          "param": None, "code": "insufficient_quota"}}
    default = OPENAI_ERRORS.get(status) or (
        ("server_error", None, "The server had an error while processing your request.")
        if status >= 500 else ("invalid_request_error", None, f"Request failed with status {status}."))
    kind, default_code, default_message = default
    return {"error": {"message": message or default_message, "type": kind, "param": None,
                      "code": code if code is not None else default_code}}


def anthropic_error(status: int, message: Optional[str] = None, code: Optional[str] = None) -> Dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}}`` as Anthropic sends it."""
    if code == "insufficient_quota":  # Anthropic's "out of credit" is a 400
        return {"type": "error", "error": {"type": "invalid_request_error",
                                           "message": message or ANTHROPIC_CREDIT_MESSAGE}}
    kind, default_message = ANTHROPIC_ERRORS.get(status) or (
        ("api_error", "Internal server error") if status >= 500
        else ("invalid_request_error", f"Request failed with status {status}."))
    return {"type": "error", "error": {"type": code or kind, "message": message or default_message}}


@dataclass(frozen=True)
class ChatRequest:
    """What both APIs ask for, after the checks."""

    model: str
    messages: List[Dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: Optional[int]


def _check_messages(messages: Any, roles: tuple) -> List[Dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ApiProblem(400, "'messages' is a required property and must be a non-empty array.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in roles:
            raise ApiProblem(400, f"messages.{i}.role: Input should be one of {', '.join(roles)}.")
        if not isinstance(message.get("content"), (str, list)):
            raise ApiProblem(400, f"messages.{i}.content: Input should be a string or an array.")
    return messages


def _check_max_tokens(body: Mapping[str, Any], required: bool) -> Optional[int]:
    value = body.get("max_tokens")
    if value is None and required:
        raise ApiProblem(400, "max_tokens: Field required")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ApiProblem(400, "max_tokens: Input should be an integer of at least 1.")
    return value  # type: ignore[no-any-return]


def _check_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiProblem(400, "you must provide a model parameter")
    return model


def parse_openai(body: Any) -> ChatRequest:
    """Check a chat-completions request. Raises ApiProblem(400) like the real API."""
    if not isinstance(body, dict):
        raise ApiProblem(400, "We could not parse the JSON body of your request.")
    model = _check_model(body)
    messages = _check_messages(body.get("messages"), ("system", "developer", "user", "assistant", "tool"))
    options = body.get("stream_options") or {}
    return ChatRequest(model, messages, body.get("stream") is True,
                       isinstance(options, dict) and options.get("include_usage") is True,
                       _check_max_tokens(body, required=False))


def parse_anthropic(body: Any) -> ChatRequest:
    """Check a Messages API request (``system`` is top level; ``max_tokens`` required).
    Raises ApiProblem(400) like the real API."""
    if not isinstance(body, dict):
        raise ApiProblem(400, "There was an issue with the JSON body of your request.")
    model = _check_model(body)
    messages = _check_messages(body.get("messages"), ("user", "assistant"))
    max_tokens = _check_max_tokens(body, required=True)
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise ApiProblem(400, "system: Input should be a string or an array of text blocks.")
    if system:
        messages = [{"role": "system", "content": system}] + messages
    return ChatRequest(model, messages, body.get("stream") is True, True, max_tokens)


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
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}}


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
                           "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                     "total_tokens": prompt_tokens + completion}}))
    events.append(sse("[DONE]"))
    return events


def anthropic_message(rid: str, model: str, text: Optional[str], stop: str,
                      input_tokens: int) -> Dict[str, Any]:
    """A Messages API body; ``text=None`` gives one without content blocks."""
    content = [] if text is None else [{"type": "text", "text": text}]
    return {"id": rid, "type": "message", "role": "assistant", "content": content, "model": model,
            "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens,
                      "output_tokens": 0 if text is None else estimate_tokens(text)}}


def anthropic_stream(rid: str, model: str, text: str, stop: str, input_tokens: int) -> List[bytes]:
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
        sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
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
