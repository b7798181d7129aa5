"""The message vocabulary every provider accepts: OpenAI's chat format, checked before
anything is sent.

A message is a dict with a ``role`` and a ``content``:

- roles ``system``, ``developer``, ``user``, ``assistant`` and ``tool``;
- ``content`` is a non-empty string or a non-empty list of parts:
  ``{"type": "text", "text": "..."}`` anywhere, and
  ``{"type": "image_url", "image_url": {"url": "https://..." | "data:image/png;base64,...",
  "detail": "auto" | "low" | "high"}}`` in user messages only (as OpenAI allows);
- ``name`` (optional, a non-empty string) is kept and sent where the provider has it;
- tool calling: an assistant message may carry ``tool_calls`` (its content then may be
  None), a ``tool`` message answers one by ``tool_call_id`` (``is_error: True`` marks a
  failed tool; Anthropic keeps the mark) and must follow the call it answers.

:func:`validate_messages` returns fresh plain dicts (the caller's objects are never
kept or changed) and raises ``ValueError`` naming the message index and the field.
Which keys each role may carry is the table :data:`ROLE_KEYS`; a key outside it is an
error rather than being dropped silently.
"""

import base64
import binascii
import collections.abc
import hashlib
import json
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..tools._messages import check_tool_calls, check_tool_results

__all__ = ["Message", "ROLES", "ROLE_KEYS", "IMAGE_DETAILS", "IMAGE_MEDIA_TYPES", "validate_messages",
           "build_messages", "prompt_hash", "message_text", "image_parts", "decode_data_url"]

#: A message as the caller writes it.
Message = Mapping[str, Any]

ROLES = ("system", "developer", "user", "assistant", "tool")
#: The keys each role may carry. ``tool`` messages (the answer to a tool call) name the
#: call they answer; assistant ``tool_calls`` belong to tool calling.
ROLE_KEYS: Dict[str, frozenset] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id", "is_error"}),
}
#: The roles whose content may hold images.
_IMAGE_ROLES = frozenset({"user"})
IMAGE_DETAILS = ("auto", "low", "high")
#: The image types both providers take inline (Anthropic's list; OpenAI takes the same).
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def validate_messages(messages: Any) -> List[Dict[str, Any]]:
    """Return ``messages`` as a list of fresh plain dicts in the vocabulary above.

    Raises:
        ValueError: no messages, a message that is not a mapping, an unknown role or
            key, or content (or a part) that is not what the role allows; the message
            names the index and field (``messages[2]['content'][0]['image_url']``).
            Raised before any request is made.
    """
    # collections.abc, not typing: the same checks, without typing's alias indirection.
    if isinstance(messages, (str, bytes)) or not isinstance(messages, collections.abc.Sequence):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise ValueError("messages must not be empty")
    checked = [_checked_message(i, message) for i, message in enumerate(messages)]
    check_tool_results(checked)
    return checked


def _checked_message(i: int, message: Any) -> Dict[str, Any]:
    where = f"messages[{i}]"
    if not isinstance(message, collections.abc.Mapping):
        raise ValueError(f"{where} must be a dict, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}['role'] must be one of {', '.join(ROLES)}, got {role!r}")
    unknown = sorted(str(key) for key in message if key not in ROLE_KEYS[role])
    if unknown:
        allowed = ", ".join(sorted(ROLE_KEYS[role]))
        raise ValueError(f"{where} has {', '.join(repr(k) for k in unknown)}, which a {role!r} message "
                         f"cannot carry (allowed: {allowed})")
    content = message.get("content")
    if role == "assistant" and "tool_calls" in message and (content is None or content == ""):
        checked: Dict[str, Any] = {"role": role, "content": None}  # only tool calls: no text
    else:
        checked = {"role": role, "content": _checked_content(where, role, content)}
    if "tool_calls" in message:
        checked["tool_calls"] = check_tool_calls(where, message["tool_calls"])
    if "is_error" in message:
        if not isinstance(message["is_error"], bool):
            raise ValueError(f"{where}['is_error'] must be True or False, got {message['is_error']!r:.40}")
        if message["is_error"]:
            checked["is_error"] = True
    for key in ("name", "tool_call_id"):
        if key in message:
            value = message[key]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}[{key!r}] must be a non-empty string, got {value!r:.60}")
            checked[key] = value
    if role == "tool" and "tool_call_id" not in checked:
        raise ValueError(f"{where} (role 'tool') needs 'tool_call_id': the id of the call it answers")
    return checked


def _checked_content(where: str, role: str, content: Any) -> Any:
    if isinstance(content, str):
        if not content.strip():
            raise ValueError(f"{where}['content'] must not be empty")
        return content
    if isinstance(content, (bytes, bytearray)) or not isinstance(content, collections.abc.Sequence):
        raise ValueError(f"{where}['content'] must be a string or a list of parts, "
                         f"got {type(content).__name__}")
    if not content:
        raise ValueError(f"{where}['content'] must not be an empty list")
    return [_checked_part(f"{where}['content'][{j}]", role, part) for j, part in enumerate(content)]


def _checked_part(where: str, role: str, part: Any) -> Dict[str, Any]:
    if not isinstance(part, collections.abc.Mapping):
        raise ValueError(f"{where} must be a dict like {{'type': 'text', 'text': ...}}, "
                         f"got {type(part).__name__}")
    kind = part.get("type")
    if kind == "text":
        _only_keys(where, part, {"type", "text"})
        text = part.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}['text'] must be a non-empty string, got {text!r:.60}")
        return {"type": "text", "text": text}
    if kind == "image_url":
        if role not in _IMAGE_ROLES:
            raise ValueError(f"{where} is an image in a {role!r} message: images go in user messages")
        _only_keys(where, part, {"type", "image_url"})
        image = _checked_image(f"{where}['image_url']", part.get("image_url"))
        return {"type": "image_url", "image_url": image}
    kinds = "'text' or 'image_url'" if role in _IMAGE_ROLES else "'text'"
    raise ValueError(f"{where}['type'] must be {kinds} in a {role!r} message, got {kind!r}")


def _checked_image(where: str, image: Any) -> Dict[str, Any]:
    if not isinstance(image, collections.abc.Mapping):
        raise ValueError(f"{where} must be a dict like {{'url': 'https://...'}}, got {type(image).__name__}")
    _only_keys(where, image, {"url", "detail"})
    url = image.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:")):
        raise ValueError(f"{where}['url'] must be an http(s) URL or a data:image/...;base64,... URL, "
                         f"got {str(url)[:60]!r}")
    if url.startswith("data:"):
        decode_data_url(url, where=f"{where}['url']")  # checked now, not by the provider
    checked = {"url": url}
    if "detail" in image:
        if image["detail"] not in IMAGE_DETAILS:
            raise ValueError(f"{where}['detail'] must be one of {', '.join(IMAGE_DETAILS)}, "
                             f"got {image['detail']!r}")
        checked["detail"] = image["detail"]
    return checked


def _only_keys(where: str, mapping: Mapping[str, Any], allowed: set) -> None:
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {', '.join(repr(k) for k in unknown)} "
                         f"(allowed: {', '.join(sorted(allowed))})")


def decode_data_url(url: str, *, where: str = "image url") -> Tuple[str, str]:
    """``(media_type, base64 data)`` of a ``data:image/...;base64,...`` URL.

    Raises:
        ValueError: not a base64 data URL of one of :data:`IMAGE_MEDIA_TYPES`, or data
            that is not base64.
    """
    header, sep, data = url.partition(",")
    media_type = header[len("data:"):].removesuffix(";base64")
    if not sep or not header.endswith(";base64") or media_type not in IMAGE_MEDIA_TYPES:
        raise ValueError(f"{where} must look like data:image/png;base64,<data> with one of "
                         f"{', '.join(IMAGE_MEDIA_TYPES)}, got {url[:40]!r}")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} holds data that is not base64") from None
    if not data:
        raise ValueError(f"{where} holds no image data")
    return media_type, data


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a checked message: its string content, or its text parts joined
    with blank lines (images left out)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(part["text"] for part in content if part.get("type") == "text")
    return ""


def image_parts(message: Mapping[str, Any]) -> Iterator[Dict[str, Any]]:
    """The ``image_url`` objects of a checked message, in order."""
    content = message.get("content")
    if isinstance(content, list):
        for part in content:
            if part.get("type") == "image_url":
                yield part["image_url"]


def build_messages(prompt: Any, system_prompt: Optional[str] = None) -> List[Dict[str, Any]]:
    """The messages for ``generate_content``. Raises ValueError on a bad prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r:.40}")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise ValueError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}")
    messages: List[Dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return messages


def prompt_hash(messages: Sequence[Message]) -> str:
    """12 hex digits of sha256 over the messages: lets logs correlate calls without
    showing the prompt."""
    blob = json.dumps([dict(m) for m in messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
