"""Secrets out of text that a user will see: a provider, a proxy or a transport error
may echo the API key back, whole, cut short or without its prefix.
"""

import re
from typing import Iterable, List

__all__ = ["redact"]

_REDACTED = "[REDACTED]"
# mask_secret shows 7 characters of a key ("sk-" and the last 4); 8 in a row is a leak.
_MIN_SECRET_PIECE = 8


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
