"""The HTTP handler of FakeLlmServer (one per connection, keep-alive): it records each
request, injects its fault and decides the answer; writing the answer is
:mod:`._fake_writer`'s job, the server that runs the handlers :mod:`._fake_http`'s.

Each request is recorded first, then takes its fault (if one is queued for it), then is
checked like a real server would (key, ``anthropic-version``, body), then answered.
"""

import json
import logging
import math
import socket
import threading
import time
from typing import Any, Dict, List, Optional
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
from ._fake_writer import FakeResponseWriter
from ._schema_sample import sample_for_schema
from .fake_faults import Fault

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
EMBEDDINGS_PATH = "/v1/embeddings"
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout)


class FakeLlmHandler(FakeResponseWriter):
    """Serves one connection; ``self.server.owner`` is the FakeLlmServer."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK of the headers: 40 ms per response on Linux (measured).
    disable_nagle_algorithm = True
    server_version = "FakeLlmServer/1.0"

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
