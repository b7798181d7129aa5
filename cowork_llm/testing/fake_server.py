"""FakeLlmServer: a real HTTP server on 127.0.0.1 that speaks the OpenAI and Anthropic APIs.

It answers ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic),
both with ``"stream": true`` as server-sent events, ``POST /v1/embeddings`` (OpenAI's
format: a deterministic unit vector per text from a hash of it, 16 numbers unless
``dimensions`` is asked for, as floats or base64) and ``GET /v1/models``; it checks the
key, records every request with its arrival time, and misbehaves on demand::

    from cowork_llm.testing import FakeLlmServer
    import requests

    with FakeLlmServer(api_key="test-key") as server:
        server.fail_next(status=503, retry_after=1)       # the next request gets a 503
        server.drop_next(path=server.CHAT_PATH)           # then a chat request is cut off
        reply = requests.post(server.base_url + "/chat/completions",
                              headers={"Authorization": "Bearer test-key"},
                              json={"model": "fake-model",
                                    "messages": [{"role": "user", "content": "hi"}]})
        ...
        assert server.request_count == 3
        config = server.config(min_interval_seconds=0.05)  # an LlmConfig pointing here
        env = server.env()                                  # COWORK_LLM_* for a subprocess

By default the answer is ``"echo: <last user message>"`` with usage estimated at four
characters a token; pass ``reply=`` to compute answers. A ``reply`` that returns a
:class:`~cowork_llm.results.ToolCall` or a list of them
(:func:`~cowork_llm.testing.tool_call`) answers with tool calls in the API's format,
whole or streamed in pieces; requests with tools are checked as the real APIs check them
(each tool result answers an earlier call). Faults are served in the order they were
queued (see :class:`~cowork_llm.testing.fake_faults.Fault`). Non-streaming responses
always carry Content-Length; streams use chunked encoding, as the real APIs do.
"""

import itertools
import logging
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ..config._sections import LlmConfig
from ._echo import echo_reply
from ._fake_config import config_env, fake_config
from ._fake_handler import CHAT_PATH, EMBEDDINGS_PATH, MESSAGES_PATH, MODELS_PATH
from ._fake_http import FakeHttpServer
from ._fake_record import RecordedRequest, RequestLog
from .fake_faults import Fault, FaultQueue
from .fake_quota import Quota, QuotaBuckets

__all__ = ["FakeLlmServer", "RecordedRequest", "Fault"]

logger = logging.getLogger(__name__)


class FakeLlmServer:
    """An OpenAI- and Anthropic-compatible HTTP/1.1 server for tests, on 127.0.0.1.

    Args:
        api_key: the key (or keys) to accept; None accepts any key, or none.
        reply: computes the answer text from the request's messages (for Anthropic, the
            top-level ``system`` comes first as a ``system`` message); default: echo.
        models: the model names served; when given, any other model gets a 404
            ``model_not_found``. ``GET /v1/models`` lists them (default ``fake-model``).
        latency_seconds: added before every response.
        stream_delay_seconds: added between streamed events.
        port: the port to bind; 0 (default) picks a free one.
        quota: a provider's quota (:class:`~cowork_llm.testing.Quota`): requests and
            tokens per minute as continuously refilling buckets, rate-limit headers on
            every answer, 429 with ``retry-after`` when over; its running buckets are
            :attr:`quota` (``server.quota.refused`` counts the 429s).

    Thread-safe: faults, the request record and the counters may be used from any thread
    while the server runs. After :meth:`stop`, :meth:`start` binds the same port again.
    """

    CHAT_PATH = CHAT_PATH
    MESSAGES_PATH = MESSAGES_PATH
    MODELS_PATH = MODELS_PATH
    EMBEDDINGS_PATH = EMBEDDINGS_PATH

    def __init__(
        self,
        *,
        api_key: Union[str, Iterable[str], None] = None,
        reply: Optional[Callable[[List[Dict[str, Any]]], Any]] = None,
        models: Optional[Iterable[str]] = None,
        latency_seconds: float = 0.0,
        stream_delay_seconds: float = 0.0,
        port: int = 0,
        quota: Optional[Quota] = None,
    ) -> None:
        if latency_seconds < 0 or stream_delay_seconds < 0:
            raise ValueError("latency_seconds and stream_delay_seconds must be 0 or more")
        self.api_keys: Optional[Tuple[str, ...]] = (
            None if api_key is None else (api_key,) if isinstance(api_key, str) else tuple(api_key))
        self.reply: Callable[[List[Dict[str, Any]]], Any] = reply or echo_reply
        self.models: Optional[Tuple[str, ...]] = tuple(models) if models is not None else None
        self.latency_seconds = latency_seconds
        self.stream_delay_seconds = stream_delay_seconds
        self._port = port
        #: the running quota buckets (None without a quota)
        self.quota: Optional[QuotaBuckets] = QuotaBuckets(quota) if quota is not None else None
        self._faults = FaultQueue()
        self._log = RequestLog()
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()
        self._httpd: Optional[FakeHttpServer] = None
        self._serve_thread: Optional[threading.Thread] = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> "FakeLlmServer":
        """Bind and serve from a daemon thread; returns self. Raises OSError when the
        port cannot be bound. Starting a running server does nothing."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            self._stopping.clear()
            httpd = FakeHttpServer(("127.0.0.1", self._port), self)
            self._port = httpd.server_address[1]
            self._httpd = httpd
            self._serve_thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"fake-llm-{self._port}", daemon=True)
            self._serve_thread.start()
            logger.debug("FakeLlmServer listening on %s", self.base_url)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close the port and every connection, and join the server's
        threads (waiting at most ``timeout`` seconds). Safe to call twice."""
        with self._lifecycle:
            httpd, self._httpd = self._httpd, None
            if httpd is None:
                return
            self._stopping.set()  # ends injected delays at once
            httpd.shutdown()
            httpd.server_close()
            threads = httpd.close_connections()
            if self._serve_thread is not None:
                threads.append(self._serve_thread)
            for thread in threads:
                thread.join(timeout)
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:  # a reply callable that never returns, most likely
                logger.warning("FakeLlmServer: threads still running after stop: %s", ", ".join(stuck))

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> "FakeLlmServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FakeLlmServer {self.base_url} {state}, {self.request_count} requests>"

    @property
    def port(self) -> int:
        """The bound port (0 before the first start)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the base URL both providers take."""
        return f"http://127.0.0.1:{self._port}/v1"

    # --- faults ----------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> "FakeLlmServer":
        """Queue faults for the next matching requests, in order; returns self."""
        for fault in faults:
            self._faults.add(fault)
        return self

    def fail_next(self, status: int = 500, *, times: int = 1, retry_after: Union[float, str, None] = None,
                  retry_after_ms: Optional[int] = None, body: Any = None, path: Optional[str] = None,
                  **fault_options: Any) -> "FakeLlmServer":
        """Answer the next ``times`` requests with ``status`` (in the provider's error
        shape, or ``body``), with Retry-After (seconds or an HTTP date) / retry-after-ms.
        More :class:`Fault` options (``error_code``, ``message``, ``headers``) pass through."""
        return self.inject(Fault("error", status=status, times=times, retry_after=retry_after,
                                 retry_after_ms=retry_after_ms, body=body, path=path, **fault_options))

    def quota_exceeded_next(self, *, times: int = 1, path: Optional[str] = None) -> "FakeLlmServer":
        """OpenAI: 429 ``insufficient_quota``. Anthropic: its 400 "credit balance is too low"."""
        return self.inject(
            Fault("error", status=429, times=times, path=path, error_code="insufficient_quota"))

    def delay_next(self, seconds: float, *, times: int = 1, path: Optional[str] = None) -> "FakeLlmServer":
        """Wait ``seconds`` before answering normally (a slow server, or a read timeout)."""
        return self.inject(Fault("delay", delay_seconds=seconds, times=times, path=path))

    def drop_next(self, *, times: int = 1, path: Optional[str] = None) -> "FakeLlmServer":
        """Close the connection without any response."""
        return self.inject(Fault("drop", times=times, path=path))

    def malformed_next(self, *, times: int = 1, path: Optional[str] = None) -> "FakeLlmServer":
        """Answer 200 with a body that is not valid JSON."""
        return self.inject(Fault("malformed", times=times, path=path))

    def empty_choices_next(self, *, times: int = 1, path: Optional[str] = None) -> "FakeLlmServer":
        """Answer 200 without choices (OpenAI) or content blocks (Anthropic)."""
        return self.inject(Fault("empty", times=times, path=path))

    def fail_mid_stream_next(self, after_chunks: int = 2, *, times: int = 1,
                             path: Optional[str] = None) -> "FakeLlmServer":
        """Cut the next streaming response after ``after_chunks`` events (non-streaming
        requests in between are not affected)."""
        return self.inject(Fault("mid_stream", after_chunks=after_chunks, times=times, path=path))

    @property
    def pending_faults(self) -> List[Fault]:
        """Faults not yet used, one entry per remaining turn."""
        return self._faults.pending()

    # --- the record --------------------------------------------------------------------------

    @property
    def requests(self) -> List[RecordedRequest]:
        """A copy of every request received, in arrival order."""
        return self._log.snapshot()

    @property
    def chat_requests(self) -> List[RecordedRequest]:
        """The POSTs to ``/v1/chat/completions`` and ``/v1/messages``."""
        return [r for r in self._log.snapshot() if _is_chat(r)]

    @property
    def embedding_requests(self) -> List[RecordedRequest]:
        """The POSTs to ``/v1/embeddings``."""
        return [r for r in self._log.snapshot() if r.method == "POST" and r.path == EMBEDDINGS_PATH]

    @property
    def request_count(self) -> int:
        return len(self._log)

    @property
    def last_request(self) -> RecordedRequest:
        """The latest request. Raises AssertionError when none arrived."""
        requests = self._log.snapshot()
        if not requests:
            raise AssertionError("FakeLlmServer has received no request")
        return requests[-1]

    def wait_for_requests(self, count: int, timeout: float = 5.0, *,
                          path: Optional[str] = None) -> List[RecordedRequest]:
        """Block until ``count`` requests (to ``path``, when given) have arrived; return
        them. Raises TimeoutError saying how many arrived."""
        return self._log.wait_for(count, timeout, lambda r: path is None or r.path == path)

    def arrival_gaps(self, path: Optional[str] = None) -> List[float]:
        """Seconds between the starts of consecutive requests (to ``path``, when given),
        in arrival order: what a rate limiter's spacing looks like from the server."""
        times = sorted(r.arrival_monotonic for r in self._log.snapshot() if path is None or r.path == path)
        return [later - earlier for earlier, later in zip(times[:-1], times[1:], strict=True)]

    def reset(self) -> None:
        """Forget the recorded requests and drop the pending faults."""
        self._log.clear()
        self._faults.clear()

    # --- pointing a client here ------------------------------------------------------------

    def config(self, **overrides: Any) -> LlmConfig:
        """An LlmConfig for this server, set up for fast tests: the server's key (or
        ``test-key``), model ``fake-model`` (or the first of ``models``), no interval
        between requests, a 10 s timeout, short retry waits, and a rate-limit key of its
        own (``fake-llm-PORT``) so servers do not share a limiter. Any field of
        ModelConfig, RateLimitConfig or RetryConfig can be overridden by name
        (``min_interval_seconds=0.05``, ``max_attempts=2``, ``provider="anthropic"``), or
        whole sections (``retry=RetryConfig(...)``).

        Raises:
            TypeError: an unknown keyword.
            ConfigError: a value the config model rejects.
        """
        if not self._port:
            raise RuntimeError("FakeLlmServer.config(): start the server first (it has no port yet)")
        key = self.api_keys[0] if self.api_keys else "test-key"
        model = self.models[0] if self.models else "fake-model"
        return fake_config(self.base_url, key, model, f"fake-llm-{self._port}", overrides)

    def env(self, **overrides: Any) -> Dict[str, str]:
        """:meth:`config` as COWORK_LLM_* variables, for ``subprocess.run(env=...)``
        (merge it into ``os.environ``). Takes the same overrides; raises what it raises."""
        return config_env(self.config(**overrides))

    # --- used by the handler -----------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        self._log.append(request)

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the server is stopping meanwhile."""
        return not self._stopping.wait(seconds)


def _is_chat(request: RecordedRequest) -> bool:
    return request.method == "POST" and request.path in (CHAT_PATH, MESSAGES_PATH)
