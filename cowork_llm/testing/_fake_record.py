"""The record FakeLlmServer keeps of every request it received."""

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional

from requests.structures import CaseInsensitiveDict


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, recorded on arrival (before any fault).

    Attributes:
        method, path: e.g. ``"POST"``, ``"/v1/chat/completions"`` (query string removed).
        headers: case-insensitive (``headers["authorization"]``); left out of the repr
            so a key never lands in a test log.
        body: the JSON body, or None when there was none or it was not JSON.
        raw_body: the body's bytes.
        arrival_monotonic, arrival_wall: ``time.monotonic()`` / ``time.time()`` when
            the request line arrived.
        thread: the name of the server thread that handled it.
        client_port: the client's source port (one per connection: shows keep-alive reuse).
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)
    body: Any
    raw_body: bytes = field(repr=False)
    arrival_monotonic: float
    arrival_wall: float
    thread: str
    client_port: int

    @property
    def json(self) -> Any:
        """The JSON body (same as :attr:`body`)."""
        return self.body

    @property
    def model(self) -> Optional[str]:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> List[Any]:
        """The request's ``messages`` (empty when it had none)."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return messages if isinstance(messages, list) else []

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def api_key(self) -> Optional[str]:
        """The key sent as ``Authorization: Bearer`` or ``x-api-key``."""
        bearer = self.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            return bearer[7:].strip()
        return self.headers.get("x-api-key")


def headers_of(message: Any) -> "CaseInsensitiveDict[str]":
    """A case-insensitive copy of http.server's header object."""
    return CaseInsensitiveDict(list(message.items()))


class RequestLog:
    """A thread-safe, append-only list of RecordedRequest with a wait."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._requests: List[RecordedRequest] = []

    def append(self, request: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def snapshot(self) -> List[RecordedRequest]:
        with self._changed:
            return list(self._requests)

    def __len__(self) -> int:
        with self._changed:
            return len(self._requests)

    def clear(self) -> None:
        with self._changed:
            self._requests.clear()

    def wait_for(self, count: int, timeout: float,
                 predicate: Callable[[RecordedRequest], bool]) -> List[RecordedRequest]:
        """Wait until ``count`` matching requests have arrived; return them.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds (says how many).
        """
        deadline = time.monotonic() + timeout

        def matching() -> List[RecordedRequest]:
            return [r for r in self._requests if predicate(r)]

        with self._changed:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"FakeLlmServer: waited {timeout:.3g} s for {count} request(s), "
                        f"{len(found)} arrived"
                    )
                self._changed.wait(left)
            return found
