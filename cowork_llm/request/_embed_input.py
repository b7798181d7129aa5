"""The checks of ``embed()``'s arguments, run before any request or limiter slot."""

import collections.abc
from typing import Any, List, Optional

__all__ = ["check_texts", "check_dimensions", "MAX_TEXT_CHARS"]

# OpenAI's embedding models take at most 8192 tokens per input; at about four characters
# a token, a text far beyond this cannot be embedded anywhere and is a caller's mistake.
MAX_TEXT_CHARS = 1_000_000


def check_texts(texts: Any) -> List[str]:
    """``texts`` as a list of strings.

    Raises:
        ValueError: not a list (a bare string included: pass ``[text]``), empty, or an
            item that is not a non-empty string (the message names its index).
    """
    if isinstance(texts, (str, bytes)):
        raise ValueError("texts must be a list of strings; for one text pass [text]")
    if not isinstance(texts, collections.abc.Sequence):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts must not be empty")
    checked = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty; embedding servers reject empty input")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"texts[{i}] has {len(text):,} characters, more than any embeddings "
                             f"model takes ({MAX_TEXT_CHARS:,}); split it first")
        checked.append(text)
    return checked


def check_dimensions(dimensions: Any) -> Optional[int]:
    """Raises ValueError unless ``dimensions`` is None or an integer of at least 1."""
    if dimensions is None:
        return None
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise ValueError(f"dimensions must be an integer of at least 1, got {dimensions!r}")
    return dimensions
