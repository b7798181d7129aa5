"""The deterministic answers and token counts shared by MockLlm and FakeLlmServer."""

import math
import re
from typing import Any, Iterable, List, Mapping

ECHO_PREFIX = "echo: "


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
