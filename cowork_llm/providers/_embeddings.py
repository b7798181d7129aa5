"""The OpenAI embeddings wire format (``POST {base_url}/embeddings``), spoken by OpenAI
and the compatible servers (llama.cpp with ``--embeddings``, vLLM, Ollama, LiteLLM).

Pure functions: the body to send and the :class:`~cowork_llm.results.EmbeddingResult`
of an answer. Sending (keys, sessions, errors) is :class:`~._base.HttpProvider`'s job.
"""

import base64
import math
import struct
from typing import Any, Dict, List, Optional, Sequence

import requests

from ..errors import InvalidResponseError
from ..results import EmbeddingResult, Usage
from ._redact import redact
from ._response_meta import JSON_ERRORS, body_request_id, provider_message, request_id_of

__all__ = ["EMBEDDINGS_PATH", "embeddings_body", "parse_embeddings_response"]

EMBEDDINGS_PATH = "/embeddings"


def embeddings_body(model: str, texts: Sequence[str], dimensions: Optional[int]) -> Dict[str, Any]:
    """The request body. ``encoding_format`` is sent as ``float``: the API's default, but
    said outright because a compatible server may default otherwise."""
    body: Dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def parse_embeddings_response(response: requests.Response, *, expected: int, fallback_model: str,
                              provider: str, dimensions: Optional[int] = None,
                              secrets: Sequence[str] = ()) -> EmbeddingResult:
    """The vectors of a 2xx embeddings response, ordered by their ``index``.

    Raises:
        InvalidResponseError: not JSON, not one vector per input text (``expected``),
            indices that are not 0..expected-1, a vector that is not a list of finite
            numbers (or base64 float32), vectors of different lengths, or of another
            length than the ``dimensions`` asked for (llama.cpp ignores ``dimensions``:
            silently longer vectors would poison an index).
    """
    request_id = request_id_of(response.headers, secrets)

    def invalid(what: str) -> InvalidResponseError:
        shown = redact(f"{provider} sent an unusable embeddings answer: {what}", secrets)
        return InvalidResponseError(shown, status_code=response.status_code, request_id=request_id)

    try:
        body = response.json()
    except JSON_ERRORS:
        raise invalid(f"not JSON: {provider_message(response)}") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise invalid(f"no data list in {provider_message(response)}")
    if len(data) != expected:
        raise invalid(f"{len(data)} embeddings for {expected} input texts")
    vectors: List[Optional[List[float]]] = [None] * expected
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < expected \
                or vectors[index] is not None:
            raise invalid(f"data[{position}] has a missing, repeated or out-of-range index")
        vector = _vector(item.get("embedding"))
        if vector is None:
            raise invalid(f"data[{position}].embedding is not a list of finite numbers")
        vectors[index] = vector
    lengths = {len(v) for v in vectors if v is not None}
    if len(lengths) > 1:
        raise invalid("the vectors have different lengths")
    if dimensions is not None and lengths != {dimensions}:
        raise invalid(f"asked for vectors of {dimensions} numbers, got {lengths.pop()}: this server or "
                      "model does not support dimensions; leave it unset")
    model = body.get("model")
    return EmbeddingResult(
        vectors=[v for v in vectors if v is not None],
        model=model if isinstance(model, str) and model else fallback_model,
        usage=_usage(body.get("usage")),
        request_id=request_id or body_request_id(body, secrets),
    )


def _vector(raw: Any) -> Optional[List[float]]:
    """A list of finite floats from a JSON list or a base64 string of little-endian
    float32 (``encoding_format: "base64"``); None when it is neither, or empty."""
    if isinstance(raw, str):
        try:
            packed = base64.b64decode(raw, validate=True)
        except ValueError:
            return None
        if not packed or len(packed) % 4:
            return None
        raw = list(struct.unpack(f"<{len(packed) // 4}f", packed))
    if not isinstance(raw, list) or not raw:
        return None
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw):
        return None
    vector = [float(x) for x in raw]
    return vector if all(math.isfinite(x) for x in vector) else None


def _usage(raw: Any) -> Optional[Usage]:
    """prompt_tokens (and total_tokens) when given as counts; embeddings produce none."""
    if not isinstance(raw, dict):
        return None
    prompt, total = raw.get("prompt_tokens"), raw.get("total_tokens")
    if not isinstance(prompt, int) or isinstance(prompt, bool) or prompt < 0:
        return None
    return Usage(prompt, 0, total if isinstance(total, int) and not isinstance(total, bool) else prompt)
