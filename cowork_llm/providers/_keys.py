"""API-key rotation: the keys of ``ModelConfig.api_keys``, shared by every thread of
one provider client.

- A 429 moves the rotation to the next key, for the attempts that follow (the error is
  still raised, so the retry policy waits and retries through the limiter).
- A 401 takes the key out of the rotation for the life of the process (WARNING, key
  masked) when another key remains: the provider raises :class:`KeyRejectedError`, which
  the retry policy retries at once with the next key. The last key is never taken out
  (nothing is left to rotate to, and the 401 may have been passing): each call tries it,
  and a 401 is the plain :class:`~cowork_llm.errors.AuthenticationError`.

Both react only to the key that failed: forty threads that got a 429 with the same key
move the rotation on once, not forty times.

:class:`KeyAuth` puts a key's headers on a request only as requests prepares it.
"""

import logging
import threading
from typing import Any, Callable, Dict, List, Sequence, Tuple

import requests
import requests.auth

from ..config._checks import mask_secret
from ._sessions import CREDENTIAL_HEADERS

__all__ = ["KeyRotation", "ApiKey", "MaskedHeader", "KeyAuth"]

logger = logging.getLogger(__name__)


class ApiKey:
    """One API key, kept out of sight: its repr and str are masked, so an error reporter
    that records local variables (``capture_locals=True``) shows ``ApiKey('sk-…AbCd')``.
    :meth:`reveal` gives the key to the code that builds the header, at the last moment."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"ApiKey({mask_secret(self._value)!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an ApiKey is not pickled: it would write the key out")


class MaskedHeader(str):
    """A header value that carries a key: its text goes on the wire, its repr is masked, so
    the header dicts that requests and urllib3 hold in their frames show no key in a
    ``capture_locals`` traceback either."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_secret(str(self)))


class KeyRotation:
    """The usable keys, and which one the next request sends. Thread-safe.

    ``label`` names the setting in messages (``llm.model``).

    Raises (at construction):
        ValueError: no keys, or an empty key.
    """

    def __init__(self, keys: Sequence[str], *, label: str = "llm.model") -> None:
        if not keys or not all(keys):
            raise ValueError(f"{label}: a key rotation needs at least one non-empty key")
        self.label = label
        self._all: Tuple[str, ...] = tuple(dict.fromkeys(keys))  # duplicates would only repeat a 401
        self._keys: List[str] = list(self._all)
        self._index = 0
        self._lock = threading.Lock()

    def current(self) -> str:
        """The key the next request should send. Raises nothing (the last key stays)."""
        with self._lock:
            return self._keys[self._index]

    def current_key(self) -> "ApiKey":
        """:meth:`current` in an :class:`ApiKey`, whose repr is masked: what a request
        holds until the moment its header is built."""
        return ApiKey(self.current())

    def on_rate_limited(self, key: str) -> None:
        """``key`` got a 429: later requests use the next key. Nothing happens when the
        rotation has already moved past ``key`` or holds only one key."""
        with self._lock:
            if len(self._keys) > 1 and self._keys[self._index] == key:
                self._index = (self._index + 1) % len(self._keys)
                logger.info("%s: key %s was rate limited; next requests use key %s", self.label,
                            mask_secret(key), mask_secret(self._keys[self._index]))

    def on_unauthorized(self, key: str) -> bool:
        """``key`` got a 401: it leaves the rotation for good (a WARNING names it,
        masked), unless it is the last key. Returns True when another key remains to try."""
        with self._lock:
            if key in self._keys and len(self._keys) > 1:
                position = self._keys.index(key)
                del self._keys[position]
                if position < self._index:
                    self._index -= 1
                if self._index >= len(self._keys):
                    self._index = 0
                logger.warning("%s: API key %s was rejected (HTTP 401) and is no longer used; "
                               "%d key(s) left", self.label, mask_secret(key), len(self._keys))
            return key not in self._keys  # still there: it is the last key

    @property
    def secrets(self) -> Tuple[str, ...]:
        """Every key ever in the rotation, removed ones included (to redact from text)."""
        return self._all

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def __repr__(self) -> str:
        with self._lock:
            shown = ", ".join(mask_secret(k) for k in self._keys)
            return f"KeyRotation({self.label}: [{shown}], current={self._index})"


class KeyAuth(requests.auth.AuthBase):
    """Puts the key's headers on the request as requests prepares it: the key stays in
    an :class:`ApiKey` (masked repr) until then, out of every frame's plain locals."""

    def __init__(self, key: ApiKey, headers: Callable[[str], Dict[str, str]]) -> None:
        self._key = key
        self._headers = headers

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        for name, value in self._headers(self._key.reveal()).items():
            request.headers[name] = MaskedHeader(value) if name.lower() in CREDENTIAL_HEADERS else value
        return request

    def __repr__(self) -> str:
        return f"KeyAuth({self._key!r})"
