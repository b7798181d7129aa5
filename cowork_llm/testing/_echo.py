"""The deterministic answers and token counts shared by MockLlm and FakeLlmServer."""

import hashlib
import math
import re
import struct
from typing import Any, Iterable, List, Mapping, Optional

ECHO_PREFIX = "echo: "
#: The length of a fake embedding when the request does not ask for ``dimensions``.
DEFAULT_EMBEDDING_DIMENSIONS = 16


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of text parts
    (``[{"type": "text", "text": ...}]``, the form both APIs also accept)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """The text of the last ``user`` message, or "" when there is none."""
    text = ""
    for message in messages:
        if message.get("role") == "user":
            text = content_text(message.get("content"))
    return text


def echo_reply(messages: Iterable[Mapping[str, Any]]) -> str:
    """The default answer: ``"echo: <last user message>"``."""
    return ECHO_PREFIX + last_user_text(messages)


def prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """:func:`estimate_tokens` over the text of every message."""
    return estimate_tokens("".join(content_text(m.get("content")) for m in messages))


def split_pieces(text: str) -> List[str]:
    """Split ``text`` into word-sized pieces that join back to exactly ``text``
    (how a streamed answer arrives)."""
    return re.findall(r"\s*\S+\s*|\s+", text) or [text]


def hash_vector(text: str, dimensions: Optional[int] = None) -> List[float]:
    """A deterministic unit vector for ``text``: the same text always gives the same
    vector, different texts (practically always) different ones. Built from sha256 of
    the text and a counter, so any length is possible."""
    size = dimensions or DEFAULT_EMBEDDING_DIMENSIONS
    raw: List[float] = []
    counter = 0
    while len(raw) < size:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        # 8 unsigned 32-bit numbers per digest, mapped to -1..1
        raw += [n / 2**31 - 1.0 for n in struct.unpack("<8I", digest)]
        counter += 1
    raw = raw[:size]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]
