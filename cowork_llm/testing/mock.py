"""MockLlm: an in-process :class:`~cowork_llm.llm.Llm` that answers from a script.

No network, no threads of its own, fully deterministic. Use it to test code that takes
an ``Llm``, and to test wrappers (``RateLimitedLlm``, retries, fallbacks) without a server::

    from cowork_llm.testing import MockLlm
    from cowork_llm.errors import ServerError

    llm = MockLlm()                                   # echoes: "echo: <last user message>"
    assert llm.generate_content("hi") == "echo: hi"

    llm = MockLlm(["first", "second"])                # a script; a third call fails loudly
    llm.enqueue(ServerError("boom", status_code=500)) # the next reply after those is an error

    llm = MockLlm(lambda messages: messages[-1]["content"].upper())   # computed answers

    assert llm.call_count == 1 and llm.calls[0].messages[-1]["content"] == "hi"

    llm = MockLlm([{"city": "Oslo"}])                 # a dict is answered as JSON text
    assert llm.chat(msgs, response_format={"type": "json_object"}).parsed == {"city": "Oslo"}

Queued replies (from the list and :meth:`MockLlm.enqueue`) are used first, in order; when
the queue is empty the *responder* answers: the callable when one was given, the echo
when nothing was given, and an ``AssertionError`` when a list was given (running off the
end of a script is a bug in the test).

``embed(texts)`` answers with deterministic unit vectors (a hash of each text, 16 numbers
unless ``dimensions`` says otherwise) and is recorded as a call of kind ``"embed"``; a
queued *exception* is raised by the next call of either kind, queued texts only answer chat.
A reply that is a :class:`~cowork_llm.results.ToolCall` (or a list of them:
``MockLlm([tool_call("get_weather", city="Oslo"), "It is sunny."])``) answers with tool
calls (``finish_reason="tool_calls"``), so an agent and ``run_tools`` can be tested offline.
With ``response_format``, the answer is parsed as a real client parses it
(``ChatResult.parsed``; InvalidResponseError when it does not match), and the echo
answers with a deterministic JSON value that matches the schema instead of echoing.
"""

import copy
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from ..llm import Llm
from ..request._embed_input import check_dimensions, check_texts
from ..request._options import ChatOptions
from ..request._structured import with_parsed
from ..results import ChatResult, EmbeddingResult, ToolCall, Usage
from ..streaming import ChatStream, StreamState
from ._echo import echo_reply, estimate_tokens, hash_vector, prompt_tokens, split_pieces
from ._schema_sample import sample_for_schema

__all__ = ["MockLlm", "MockCall", "Reply", "Responder"]

#: One scripted answer: text, a whole ChatResult, a dict or list (answered as its JSON
#: text), or an exception (instance or class) to raise.
Reply = Union[str, ChatResult, ToolCall, Dict[str, Any], List[Any], BaseException, type]
#: Computes the answer text from the messages.
Responder = Callable[[List[Dict[str, str]]], str]


@dataclass(frozen=True)
class MockCall:
    """One call that reached the mock (bad arguments are rejected before recording).

    ``kind`` is ``"chat"``, ``"stream"`` or ``"embed"``; ``options`` holds every option of
    :class:`~cowork_llm.request.ChatOptions` as passed (None when not; ``dimensions`` for
    embed, whose ``messages`` are ``{"role": "embedding-input", "content": text}`` per
    text); ``thread`` is the calling thread's name; ``monotonic`` and ``wall`` are
    ``time.monotonic()`` / ``time.time()`` when the call arrived.
    """

    index: int
    messages: List[Dict[str, str]]
    options: Dict[str, Any]
    thread: str
    monotonic: float
    wall: float
    kind: str = "chat"
    reply: Optional[str] = field(default=None, compare=False)

    @property
    def prompt(self) -> str:
        """The content of the last message (usually the user's prompt)."""
        return self.messages[-1]["content"]


class MockLlm(Llm):
    """A scripted :class:`~cowork_llm.llm.Llm`; safe to share between threads.

    Args:
        replies: a list of :data:`Reply` (a script), a callable ``(messages) -> str``, or
            None to echo ``"echo: <last user message>"``.
        model: the model name; ``name`` becomes ``"mock:<model>"``.
        latency_seconds: sleep this long inside every call (to hold a limiter slot).
        gate: when given, every call waits until this event is set before answering —
            a deterministic way to keep calls in flight while a test looks at them.

    ``usage`` in each result is a deterministic estimate (characters / 4).

    Raises ValueError or TypeError at construction for bad arguments. A call raises
    ValueError for bad messages or options (as a real client does), the scripted error
    (see :meth:`fail_next`), AssertionError when the scripted replies ran out, or
    InvalidResponseError for a ``response_format`` answer that does not match.
    """

    def __init__(
        self,
        replies: Union[Iterable[Reply], Responder, None] = None,
        *,
        model: str = "mock-model",
        latency_seconds: float = 0.0,
        gate: Optional[threading.Event] = None,
    ) -> None:
        if latency_seconds < 0:
            raise ValueError(f"latency_seconds must be 0 or more, got {latency_seconds!r}")
        self.model = model
        self.name = f"mock:{model}"
        self.latency_seconds = latency_seconds
        self.gate = gate
        self.closed = False
        self._lock = threading.Lock()
        self._queue: Deque[Reply] = deque()
        self._calls: List[MockCall] = []
        self._counter = itertools.count(1)
        self._responder: Optional[Responder]
        if replies is None:
            self._responder = echo_reply
        elif callable(replies):
            self._responder = replies
        elif isinstance(replies, (str, bytes)):
            raise TypeError("replies must be a list of replies, a callable or None, not a string")
        else:
            self._responder = None
            self._queue.extend(replies)

    # --- scripting -------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> "MockLlm":
        """Queue replies for the next calls, in order; returns self for chaining.
        An exception (instance or class) is raised by the call that takes it."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def fail_next(self, error: Union[BaseException, type], times: int = 1) -> "MockLlm":
        """Make the next ``times`` calls raise ``error`` (a fresh copy each time)."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times!r}")
        return self.enqueue(*([error] * times))

    @property
    def pending(self) -> int:
        """How many queued replies are left."""
        with self._lock:
            return len(self._queue)

    # --- the record ------------------------------------------------------------------

    @property
    def calls(self) -> List[MockCall]:
        """A copy of every call so far, in arrival order."""
        with self._lock:
            return list(self._calls)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._calls)

    @property
    def last_call(self) -> MockCall:
        """The most recent call. Raises AssertionError when there was none."""
        with self._lock:
            if not self._calls:
                raise AssertionError("MockLlm was never called")
            return self._calls[-1]

    @property
    def prompts(self) -> List[str]:
        """The last message's content of each call, in arrival order."""
        return [call.prompt for call in self.calls]

    def reset(self) -> None:
        """Forget the calls and drop the queued replies."""
        with self._lock:
            self._calls.clear()
            self._queue.clear()

    # --- the Llm interface -------------------------------------------------------------

    def send(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatResult:
        """Answer from the script (see :meth:`~cowork_llm.llm.Llm.chat`).

        Raises:
            AssertionError: a script given as a list has run out.
            InvalidResponseError: with ``response_format``, an answer that does not match.
            Exception: any exception queued for this call.
        """
        call = self._arrive(messages, options, "chat")
        content = self._answer(messages, call, options)
        if isinstance(content, ChatResult):
            return with_parsed(content, options.response_format)
        usage = Usage.of(prompt_tokens(messages), estimate_tokens(content))
        result = ChatResult(
            content=content,
            model=self.model,
            finish_reason="stop",
            usage=usage,
            request_id=f"mock-{call.index}",
            raw={"mock": True, "call": call.index},
        )
        return with_parsed(result, options.response_format)

    def send_stream(self, messages: List[Dict[str, Any]], options: ChatOptions) -> ChatStream:
        """Yield the scripted answer in word-sized pieces, as a
        :class:`~cowork_llm.streaming.ChatStream`; a queued exception is raised when
        iteration starts."""
        call = self._arrive(messages, options, "stream")
        state = StreamState(model=self.model, response_format=options.response_format)
        return ChatStream(self._pieces(messages, call, options, state), state)

    def embed(self, texts: Sequence[str], *, dimensions: Optional[int] = None) -> EmbeddingResult:
        """Deterministic vectors, one per text (see the module docstring).

        Raises:
            ValueError: bad texts or dimensions (nothing is recorded).
            Exception: an exception queued at the head of the script.
        """
        checked = check_texts(texts)
        dimensions = check_dimensions(dimensions)
        with self._lock:
            call = MockCall(index=next(self._counter),
                            messages=[{"role": "embedding-input", "content": t} for t in checked],
                            options={"dimensions": dimensions}, thread=threading.current_thread().name,
                            monotonic=time.monotonic(), wall=time.time(), kind="embed")
            self._calls.append(call)
            head = self._queue[0] if self._queue else None
            error = head if isinstance(head, BaseException) or (
                isinstance(head, type) and issubclass(head, BaseException)) else None
            if error is not None:
                self._queue.popleft()
        if self.gate is not None:
            self.gate.wait()
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        if isinstance(error, type):
            raise error(f"MockLlm: injected {error.__name__} on call {call.index}")
        if error is not None:
            raise _fresh(error)
        tokens = sum(estimate_tokens(t) for t in checked)
        return EmbeddingResult(vectors=[hash_vector(t, dimensions) for t in checked], model=self.model,
                               usage=Usage(tokens, 0, tokens), request_id=f"mock-{call.index}")

    def close(self) -> None:
        self.closed = True

    # --- internals ---------------------------------------------------------------------

    def _arrive(self, messages: List[Dict[str, Any]], options: ChatOptions, kind: str) -> MockCall:
        with self._lock:
            call = MockCall(
                index=next(self._counter),
                messages=messages,
                options=options.as_dict(),
                thread=threading.current_thread().name,
                monotonic=time.monotonic(),
                wall=time.time(),
                kind=kind,
            )
            self._calls.append(call)
        return call

    def _answer(self, messages: List[Dict[str, Any]], call: MockCall,
                options: ChatOptions) -> Union[str, ChatResult]:
        if self.gate is not None:
            self.gate.wait()
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        with self._lock:
            reply: Optional[Reply] = self._queue.popleft() if self._queue else None
        if reply is None:
            if self._responder is None:
                raise AssertionError(
                    f"MockLlm: no reply left for call {call.index} "
                    "(the scripted replies ran out; enqueue more or pass a callable)"
                )
            fmt = options.response_format
            if self._responder is echo_reply and fmt is not None and fmt.type != "text":
                reply = sample_for_schema(fmt.schema or {"type": "object"})
            else:
                reply = self._responder(messages)
        calls = _tool_calls(reply, call.index)
        if calls:
            return ChatResult(content="", model=self.model, finish_reason="tool_calls",
                              usage=Usage.of(prompt_tokens(messages), sum(estimate_tokens(c.raw_arguments)
                                                                          for c in calls)),
                              request_id=f"mock-{call.index}", raw={"mock": True, "call": call.index},
                              tool_calls=calls)
        if isinstance(reply, (dict, list)):
            reply = json.dumps(reply)
        if isinstance(reply, type) and issubclass(reply, BaseException):
            raise reply(f"MockLlm: injected {reply.__name__} on call {call.index}")
        if isinstance(reply, BaseException):
            raise _fresh(reply)
        if not isinstance(reply, (str, ChatResult)):
            raise TypeError("MockLlm reply must be a str, ChatResult, dict, list or exception, "
                            f"got {reply!r:.60}")
        return reply

    def _pieces(self, messages: List[Dict[str, Any]], call: MockCall, options: ChatOptions,
                state: StreamState) -> Iterator[str]:
        answer = self._answer(messages, call, options)
        text = answer.content if isinstance(answer, ChatResult) else answer
        if text:
            yield from split_pieces(text)
        if isinstance(answer, ChatResult):
            state.tool_calls, state.finish_reason = answer.tool_calls, answer.finish_reason


def _tool_calls(reply: Any, index: int) -> Tuple[ToolCall, ...]:
    """A reply that is a ToolCall or a list of them, each with an id; () otherwise."""
    calls = [reply] if isinstance(reply, ToolCall) else reply
    if not isinstance(calls, list) or not calls or not all(isinstance(c, ToolCall) for c in calls):
        return ()
    return tuple(c if c.id else ToolCall(f"mock-call-{index}-{i}", c.name, c.arguments,
                                         c.raw_arguments or json.dumps(c.arguments))
                 for i, c in enumerate(calls))


def _fresh(error: BaseException) -> BaseException:
    """A copy of ``error``, so raising it from several calls (or threads) does not
    pile tracebacks onto one shared object."""
    try:
        return copy.copy(error)
    except Exception:  # an exception class that cannot be copied: raise the original
        return error
