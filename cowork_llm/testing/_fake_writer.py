"""How FakeLlmServer writes its answers: JSON bodies, errors in the shape of the provider
the client speaks (with a request id), faults (dropped, malformed, error statuses), and
server-sent events in chunked encoding, cut short when a fault says so.

:class:`FakeResponseWriter` is the base of the handler (:mod:`._fake_handler`), which
decides what to answer and sets ``anthropic`` for the request it serves.
"""

import json
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

from . import _fake_protocol as wire
from .fake_faults import Fault

if TYPE_CHECKING:
    from .fake_server import FakeLlmServer

__all__ = ["FakeResponseWriter"]


class FakeResponseWriter(BaseHTTPRequestHandler):
    """The writing half of the handler; ``self.server.owner`` is the FakeLlmServer."""

    anthropic: bool  #: answer in Anthropic's shapes (set by the handler for each request)

    @property
    def owner(self) -> "FakeLlmServer":
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def _serve_fault(self, fault: Fault) -> None:
        """Answer with ``fault`` (kinds error, drop, malformed) instead of the answer."""
        if fault.kind == "drop":  # no status line at all: the client sees the connection close
            self.close_connection = True
            return
        if fault.kind == "malformed":
            self._send_body(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess',
                            "application/json", fault.response_headers())
            return
        if fault.body is not None:
            self._send_body(fault.status, fault.body, "application/json", fault.response_headers())
            return
        status = fault.status
        if self.anthropic and fault.error_code == "insufficient_quota":
            status = 400  # Anthropic's "credit balance is too low" is a 400, not a 429
        self._send_error(status, fault.message, fault.error_code, fault.response_headers())

    def _send_error(self, status: int, message: Optional[str], code: Optional[str],
                    headers: Optional[Mapping[str, str]] = None, *, param: Optional[str] = None) -> None:
        request_id = f"req_fake_err{self.owner._next_id():08d}"
        if self.anthropic:  # Anthropic repeats the request id in the error body
            body = wire.anthropic_error(status, message, code, request_id=request_id)
            extra = {"request-id": request_id}
        else:
            body = wire.openai_error(status, message, code, param)
            extra = {"x-request-id": request_id}
        extra.update(headers or {})
        self._send_json(status, body, extra)

    def _send_json(self, status: int, body: Any, headers: Optional[Mapping[str, str]] = None) -> None:
        self._send_body(status, body, "application/json", headers)

    def _send_body(self, status: int, body: Union[bytes, str, Mapping[str, Any]], content_type: str,
                   headers: Optional[Mapping[str, str]] = None) -> None:
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: List[bytes], fault: Optional[Fault], headers: Dict[str, str]) -> None:
        """Server-sent events in chunked transfer encoding, as the real APIs stream."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        cut_after = fault.after_chunks if fault is not None and fault.kind == "mid_stream" else None
        for i, event in enumerate(events):
            if cut_after is not None and i >= cut_after:
                # no terminating chunk: the client sees the stream end prematurely
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            pause = self.owner.stream_delay_seconds
            if i and pause and not self.owner._pause(pause):
                self.close_connection = True
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
