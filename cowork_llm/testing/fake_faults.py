"""Faults FakeLlmServer can inject into its next responses, and the queue that holds them.

A :class:`Fault` describes one misbehaviour; ``times`` says how many requests in a row
get it. Faults are served first in, first out: each request takes the first queued fault
whose ``path`` matches it (None matches every path). ``mid_stream`` faults only match
streaming requests, so a plain call in between does not use them up.
"""

import threading
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Union

__all__ = ["Fault", "FAULT_KINDS"]

#: ``error``: answer ``status`` with the provider's error body (or ``body``).
#: ``delay``: wait ``delay_seconds``, then answer normally (a slow server; a read timeout).
#: ``drop``: close the connection without any response.
#: ``malformed``: 200 whose body is not valid JSON.
#: ``empty``: 200 with no choices (OpenAI) / no content blocks (Anthropic).
#: ``mid_stream``: start a stream, send ``after_chunks`` events, then cut the connection.
FAULT_KINDS = ("error", "delay", "drop", "malformed", "empty", "mid_stream")


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for the next ``times`` matching requests.

    Args:
        kind: one of :data:`FAULT_KINDS`.
        status: the HTTP status for ``kind="error"`` (e.g. 429, 500, 529).
        times: how many matching requests in a row get this fault.
        path: only requests to this path (e.g. ``"/v1/chat/completions"``); None: any.
        delay_seconds: wait this long before the fault happens (any kind).
        retry_after: the ``Retry-After`` header: seconds, or an HTTP date string.
        retry_after_ms: the ``retry-after-ms`` header (OpenAI's), in milliseconds.
        error_code: the provider's error code/type, e.g. ``"insufficient_quota"``;
            by default the one a real server sends for ``status``.
        message: the error message; by default a realistic one.
        body: the whole response body instead of the provider's error shape
            (a dict is sent as JSON; str/bytes as they are).
        headers: extra response headers, e.g. ``{"x-request-id": "req_1"}``.
        after_chunks: for ``mid_stream``: events sent before the connection is cut.

    Raises:
        ValueError: an unknown kind or an out-of-range value.
    """

    kind: str = "error"
    status: int = 500
    times: int = 1
    path: Optional[str] = None
    delay_seconds: float = 0.0
    retry_after: Union[float, str, None] = None
    retry_after_ms: Optional[int] = None
    error_code: Optional[str] = None
    message: Optional[str] = None
    body: Union[Mapping[str, Any], str, bytes, None] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    after_chunks: int = 2

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault kind must be one of {', '.join(FAULT_KINDS)}, got {self.kind!r}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault status must be an HTTP status (100-599), got {self.status!r}")
        if self.times < 1:
            raise ValueError(f"Fault times must be at least 1, got {self.times!r}")
        if self.delay_seconds < 0:
            raise ValueError(f"Fault delay_seconds must be 0 or more, got {self.delay_seconds!r}")
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(
                f"Fault path must start with '/', e.g. '/v1/chat/completions', got {self.path!r}")
        if self.after_chunks < 0:
            raise ValueError(f"Fault after_chunks must be 0 or more, got {self.after_chunks!r}")

    def matches(self, path: str, streaming: bool) -> bool:
        """Whether a request to ``path`` (streaming or not) takes this fault."""
        if self.kind == "mid_stream" and not streaming:
            return False
        return self.path is None or self.path == path

    def response_headers(self) -> dict:
        """The Retry-After family and the extra headers this fault adds."""
        headers = dict(self.headers)
        if self.retry_after is not None:
            value = self.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            headers["Retry-After"] = str(value)
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        return headers


class FaultQueue:
    """The pending faults, first in first out; safe to use from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: List[List[Any]] = []  # [fault, uses left]

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append([fault, fault.times])

    def take(self, path: str, streaming: bool) -> Optional[Fault]:
        """Use up one turn of the first fault matching this request, if any."""
        with self._lock:
            for entry in self._pending:
                fault = entry[0]
                if fault.matches(path, streaming):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._pending.remove(entry)
                    return fault  # type: ignore[no-any-return]
        return None

    def pending(self) -> List[Fault]:
        """The faults still queued (one entry per remaining turn)."""
        with self._lock:
            return [fault for fault, left in self._pending for _ in range(left)]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
