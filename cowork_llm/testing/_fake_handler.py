"""The HTTP side of FakeLlmServer: a threading server that can end its connections, and
the handler (one per connection, keep-alive) that records, injects faults and answers.

Each request is recorded first, then takes its fault (if one is queued for it), then is
checked like a real server would (key, ``anthropic-version``, body), then answered.
"""

import itertools
import json
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from ..results import ToolCall
from . import _fake_protocol as wire
from . import _fake_requests
from ._echo import echo_reply, estimate_tokens, prompt_tokens
from ._fake_record import RecordedRequest, headers_of
from ._fake_tools import (
    anthropic_tool_message,
    anthropic_tool_stream,
    as_tool_calls,
    openai_tool_completion,
    openai_tool_stream,
)
from ._schema_sample import sample_for_schema
from .fake_faults import Fault

if TYPE_CHECKING:
    from .fake_server import FakeLlmServer

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
EMBEDDINGS_PATH = "/v1/embeddings"
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout)


class FakeLlmHandler(BaseHTTPRequestHandler):
    """Serves one connection; ``self.server.owner`` is the FakeLlmServer."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK of the headers: 40 ms per response on Linux (measured).
    disable_nagle_algorithm = True
    server_version = "FakeLlmServer/1.0"

    @property
    def owner(self) -> "FakeLlmServer":
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def parse_request(self) -> bool:
        self._arrival = (time.monotonic(), time.time())  # as soon as the request line is in
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    do_PUT = do_DELETE = do_PATCH = do_POST

    # --- one request ---------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._handle()
        except _GONE:  # the client went away: nothing to answer, nothing to report
            self.close_connection = True

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(self.path).path.rstrip("/") or "/"
        request = RecordedRequest(
            method=self.command, path=path, headers=headers_of(self.headers), body=body,
            raw_body=raw, arrival_monotonic=self._arrival[0], arrival_wall=self._arrival[1],
            thread=threading.current_thread().name, client_port=self.client_address[1],
        )
        self.owner._record(request)
        # Anthropic's shapes for its own path, and for any other path but OpenAI's own
        # endpoints when the client speaks Anthropic (sends anthropic-version).
        self.anthropic = path.startswith(MESSAGES_PATH) or (
            path not in (CHAT_PATH, EMBEDDINGS_PATH) and "anthropic-version" in request.headers)
        fault = self.owner._faults.take(path, request.stream)
        pause = self.owner.latency_seconds + (fault.delay_seconds if fault else 0.0)
        if pause and not self.owner._pause(pause):
            self.close_connection = True  # the server is stopping
            return
        if fault is not None and fault.kind in ("error", "drop", "malformed"):
            self._serve_fault(fault)
            return
        try:
            self._check_auth(request)
            if (self.command, path) == ("GET", MODELS_PATH):
                self._send_json(200, self._model_list())
            elif self.command == "POST" and path in (CHAT_PATH, MESSAGES_PATH):
                self._chat(request, fault)
            elif (self.command, path) == ("POST", EMBEDDINGS_PATH):
                self._embeddings(request, fault)
            else:
                if self.anthropic:  # Anthropic's words and type (not_found_error)
                    raise wire.ApiProblem(404, "Not found", "not_found_error")
                raise wire.ApiProblem(404, f"Unknown request URL: {self.command} {path}.", "unknown_url")
        except wire.ApiProblem as problem:
            self._send_error(problem.status, problem.message, problem.code, param=problem.param)

    def _check_auth(self, request: RecordedRequest) -> None:
        keys = self.owner.api_keys
        if self.anthropic:
            if "anthropic-version" not in request.headers:
                raise wire.ApiProblem(400, "anthropic-version: header is required")
        bearer = request.headers.get("authorization", "")
        sent = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if self.anthropic:  # the official SDK sends Bearer; older clients x-api-key
            sent = sent or request.headers.get("x-api-key")
        if keys is None:
            return
        if not sent:
            message = ("x-api-key or Authorization header is required" if self.anthropic else
                       "You didn't provide an API key. Provide it in the Authorization header "
                       "(Authorization: Bearer YOUR_KEY).")
            raise wire.ApiProblem(401, message, None if self.anthropic else "invalid_api_key")
        if sent not in keys:  # the message never repeats the key: it would leak into errors
            raise wire.ApiProblem(401)

    def _model_list(self) -> Dict[str, Any]:
        names = self.owner.models or ("fake-model",)
        if self.anthropic:
            data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
                    for n in names]
            return {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 1735689600,
                                            "owned_by": "cowork-llm-fake"} for n in names]}

    def _chat(self, request: RecordedRequest, fault: Optional[Fault]) -> None:
        if self.anthropic:
            parsed = _fake_requests.parse_anthropic(request.body)
        else:
            parsed = _fake_requests.parse_openai(request.body)
        if self.owner.models and parsed.model not in self.owner.models:
            if self.anthropic:
                raise wire.ApiProblem(404, f"model: {parsed.model}", "not_found_error")
            raise wire.ApiProblem(404, f"The model `{parsed.model}` does not exist.", "model_not_found")
        try:
            if self.owner.reply is echo_reply and parsed.schema is not None:
                text = json.dumps(sample_for_schema(parsed.schema))  # JSON matching the schema
            else:
                text = self.owner.reply(parsed.messages)
        except Exception as error:  # a test's reply callable failed: answer 500, say why
            logger.warning("FakeLlmServer reply callable raised %r", error)
            raise wire.ApiProblem(500, f"reply callable raised {type(error).__name__}: {error}") from None
        calls = as_tool_calls(text, "toolu_fake" if self.anthropic else "call_fake", self.owner._next_id())
        if calls:
            return self._tool_answer(parsed, calls, fault)
        if not isinstance(text, str):
            raise wire.ApiProblem(500, f"reply callable returned {type(text).__name__}, not a str or "
                                  "ToolCall(s)")
        text, stop_sequence = wire.apply_stop(text, parsed.stop)
        text, cut = wire.truncate(text, parsed.max_tokens)
        tokens = prompt_tokens(parsed.messages)
        empty = fault is not None and fault.kind == "empty"
        limits: Dict[str, str] = {}
        if self.owner.quota is not None:
            answered = 0 if empty else estimate_tokens(text)
            family = self.owner.quota.quota.headers
            family = family if family != "auto" else ("anthropic" if self.anthropic else "openai")
            admitted, retry_after, limits = self.owner.quota.take(
                {"requests": 1, "tokens": tokens + answered, "input_tokens": tokens,
                 "output_tokens": answered}, family)
            if not admitted:
                assert retry_after is not None
                limits["retry-after"] = str(max(1, math.ceil(retry_after)))
                if family == "openai":
                    limits["retry-after-ms"] = str(max(1, math.ceil(retry_after * 1000)))
                return self._send_error(429, "Rate limit reached: the fake's quota is spent; "
                                        "retry after the time given", "rate_limit_exceeded"
                                        if not self.anthropic else "rate_limit_error", limits)
        n = self.owner._next_id()
        if self.anthropic:
            rid = f"msg_fake{n:08d}"
            stop = "max_tokens" if cut else ("stop_sequence" if stop_sequence else "end_turn")
            stop_sequence = None if cut else stop_sequence
            if parsed.stream and not empty:
                events = wire.anthropic_stream(rid, parsed.model, text, stop, tokens, stop_sequence)
                return self._send_stream(events, fault, {"request-id": f"req_fake{n:08d}", **limits})
            body = wire.anthropic_message(rid, parsed.model, None if empty else text, stop, tokens,
                                          stop_sequence)
            return self._send_json(200, body, {"request-id": f"req_fake{n:08d}", **limits})
        rid, finish = f"chatcmpl-fake{n:08d}", ("length" if cut else "stop")
        if parsed.stream and not empty:
            events = wire.openai_stream(rid, parsed.model, text, finish, tokens, parsed.include_usage)
            return self._send_stream(events, fault, {"x-request-id": f"req_fake{n:08d}", **limits})
        body = wire.openai_completion(rid, parsed.model, None if empty else text, finish, tokens)
        self._send_json(200, body, {"x-request-id": f"req_fake{n:08d}", **limits})

    def _tool_answer(self, parsed: Any, calls: List[ToolCall], fault: Optional[Fault]) -> None:
        """Answer with tool calls (the reply callable returned ToolCall(s)), whole or streamed."""
        unknown = [c.name for c in calls if c.name not in parsed.tools]
        if unknown:  # a real model can only call what it was offered
            raise wire.ApiProblem(500, f"reply callable called {unknown[0]!r}, which the request's tools "
                                  f"({', '.join(parsed.tools) or 'none'}) do not offer")
        n = self.owner._next_id()
        tokens = prompt_tokens(parsed.messages)
        if self.anthropic:
            rid, headers = f"msg_fake{n:08d}", {"request-id": f"req_fake{n:08d}"}
            if parsed.stream:
                return self._send_stream(anthropic_tool_stream(rid, parsed.model, calls, tokens, wire.sse),
                                         fault, headers)
            return self._send_json(200, anthropic_tool_message(rid, parsed.model, calls, tokens), headers)
        rid, headers = f"chatcmpl-fake{n:08d}", {"x-request-id": f"req_fake{n:08d}"}
        if parsed.stream:
            events = openai_tool_stream(rid, parsed.model, calls, tokens, parsed.include_usage, wire.sse)
            return self._send_stream(events, fault, headers)
        self._send_json(200, openai_tool_completion(rid, parsed.model, calls, tokens), headers)

    def _embeddings(self, request: RecordedRequest, fault: Optional[Fault]) -> None:
        parsed = wire.parse_embeddings(request.body)
        if self.owner.models and parsed.model not in self.owner.models:
            raise wire.ApiProblem(404, f"The model `{parsed.model}` does not exist.", "model_not_found")
        body = wire.embeddings_response(parsed, empty=fault is not None and fault.kind == "empty")
        self._send_json(200, body, {"x-request-id": f"req_fake{self.owner._next_id():08d}"})

    # --- writing ---------------------------------------------------------------------------

    def _serve_fault(self, fault: Fault) -> None:
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


class FakeHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its connections and threads, so stop() can end them."""

    daemon_threads = True  # a server the test forgot to stop must not hang interpreter exit
    request_queue_size = 128  # 64 clients connecting at once must not overflow the backlog

    def __init__(self, address: Tuple[str, int], owner: "FakeLlmServer") -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set = set()
        self._handler_threads: set = set()
        self._numbers = itertools.count(1)
        super().__init__(address, FakeLlmHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True,
            name=f"fake-llm-{self.server_address[1]}-conn-{next(self._numbers)}",
        )
        with self._lock:
            self._connections.add(request)
            self._handler_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.discard(request)
                self._handler_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr; a vanished client is normal here
        logger.debug("FakeLlmServer: error on a connection from %s", client_address, exc_info=True)

    def close_connections(self) -> List[threading.Thread]:
        """Shut every open connection (waking handlers idle on keep-alive); return the
        handler threads still to be joined."""
        with self._lock:
            connections, threads = list(self._connections), list(self._handler_threads)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        return threads
