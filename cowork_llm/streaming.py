"""ChatStream: an answer arriving in pieces, tied to the HTTP response it is read from.

A stream must give back what it holds (the connection, and the limiter slot a wrapper
registered in :attr:`ChatStream.on_close`) whichever way the consumer leaves: reading to
the end, ``break`` inside a ``with`` block, :meth:`ChatStream.close`, an error in the
middle, or simply dropping the object. All of these end in one ``weakref.finalize``
callback, which Python runs at most once; it holds no reference to the stream itself,
so dropping the last reference runs it at once (on CPython) rather than at some later
garbage collection.

A stream caught in a reference cycle (e.g. kept by a stored exception's traceback) is
only freed by the garbage collector, which runs in whichever thread happens to allocate,
possibly one holding a rate limiter's or usage tracker's lock in the middle of
``acquire()``. Ending the stream there (which takes those locks) deadlocked that thread
and, with it, every thread waiting for a slot. So a stream found by the collector is
handed to a background thread (the "reaper"), which ends it moments later;
:func:`wait_for_collected_streams` waits for that (for tests, after ``gc.collect()``).
"""

import gc
import logging
import os
import queue
import threading
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type, Union

from .limits import LimitReport
from .results import ChatResult, ToolCall, Usage

__all__ = ["ChatStream", "StreamState", "wait_for_collected_streams"]

logger = logging.getLogger(__name__)


@dataclass
class StreamState:
    """What the provider's reader learns while reading; :class:`ChatStream` shows it.
    Kept apart from the stream so the reader does not reference (and keep alive) it."""

    model: str
    request_id: Optional[str] = None
    usage: Optional[Usage] = None
    finish_reason: Optional[str] = None
    rate_limits: Optional[LimitReport] = None  #: the response's rate-limit headers
    #: the tool calls, assembled from the stream's pieces once it has ended
    tool_calls: Tuple[ToolCall, ...] = ()
    #: the request's response_format (a structured.ResponseFormat), for ChatStream.parsed
    response_format: Any = None


# --- streams found by the garbage collector ------------------------------------------------

_Finishing = Tuple[Iterator[str], Any, List[Callable[[], None]]]

#: Per thread: is this thread running a garbage collection right now (set by a gc callback)?
_collecting = threading.local()
#: Streams (and wait_for_collected_streams' markers) for the reaper, in order. SimpleQueue's
#: put() is documented as safe from __del__ methods and weakref callbacks: it takes no lock
#: that the interrupted code could hold.
_collected: "queue.SimpleQueue[Union[_Finishing, threading.Event]]" = queue.SimpleQueue()
_reaper: Optional[threading.Thread] = None
_reaper_lock = threading.Lock()


def _note_collection(phase: str, info: Dict[str, Any]) -> None:
    _collecting.active = phase == "start"


gc.callbacks.append(_note_collection)


def _reap() -> None:
    """The reaper thread: end the streams the garbage collector found, one by one."""
    while True:
        item = _collected.get()
        if isinstance(item, threading.Event):
            item.set()  # everything queued before this marker has been ended
            continue
        try:
            _finish_now(*item)
        except Exception:  # never let one stream stop the reaper
            logger.exception("ending a garbage-collected ChatStream failed")


def _ensure_reaper() -> None:
    """Start the reaper unless it runs. Called where starting a thread is safe (never from
    inside a collection: Thread.start takes locks of its own)."""
    global _reaper
    if _reaper is not None and _reaper.is_alive():
        return
    with _reaper_lock:
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap, name="cowork_llm-stream-reaper", daemon=True)
            _reaper.start()


def _forget_reaper_after_fork() -> None:
    # The child has no reaper thread, and a lock or queue of the parent may be mid-use.
    global _reaper, _reaper_lock, _collected
    _reaper, _reaper_lock, _collected = None, threading.Lock(), queue.SimpleQueue()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_reaper_after_fork)


def wait_for_collected_streams(timeout: float = 5.0) -> bool:
    """Wait until every stream the garbage collector has found so far has been ended by
    the reaper (slot given back, callbacks run). For tests, after ``gc.collect()``.
    Returns False when ``timeout`` ran out first; raises nothing."""
    _ensure_reaper()
    done = threading.Event()
    _collected.put(done)
    return done.wait(timeout)


def _finish(pieces: Iterator[str], response: Any, callbacks: List[Callable[[], None]]) -> None:
    """The finalizer: end the stream now, or, inside a garbage collection, let the reaper
    end it (see the module docstring)."""
    if getattr(_collecting, "active", False):
        _collected.put((pieces, response, callbacks))
        return
    _finish_now(pieces, response, callbacks)


def _finish_now(pieces: Iterator[str], response: Any, callbacks: List[Callable[[], None]]) -> None:
    """Close the reader and the response, then run every on_close callback; a failing
    callback is logged and does not stop the others."""
    close_reader = getattr(pieces, "close", None)
    if close_reader is not None:
        try:
            close_reader()
        except ValueError:
            pass  # "generator already executing": closed from another thread; the response close ends it
    if response is not None:
        try:
            response.close()
        except Exception:  # a close that fails leaves nothing further to release
            logger.debug("closing a streamed response failed", exc_info=True)
    for callback in list(callbacks):
        try:
            callback()
        except Exception:
            logger.exception("a ChatStream on_close callback failed")


class ChatStream(Iterator[str]):
    """An iterator of text pieces and a context manager.

    After the end, :attr:`usage`, :attr:`finish_reason`, :attr:`model` and
    :attr:`request_id` describe the answer (``usage`` is None when the server sent none),
    and :attr:`content` is the whole text read.

    :attr:`on_close` is a list of callables run exactly once when the stream ends:
    exhausted, closed early, failed mid-stream, or garbage-collected (by the reaper
    thread, moments later, when the cycle collector freed it). Register them before
    reading; one added after the stream closed never runs.

    Iterating raises the mapped :class:`~cowork_llm.errors.LlmApiError` when the stream
    fails in the middle (after closing it). A stream is read by one thread at a time;
    :meth:`close` may come from any thread.
    """

    def __init__(self, pieces: Iterator[str], state: StreamState, *, response: Any = None) -> None:
        self._pieces = pieces
        self._state = state
        self._parts: List[str] = []
        self.on_close: List[Callable[[], None]] = []
        _ensure_reaper()  # now, while starting a thread is safe, in case a collection finds it
        self._finalizer = weakref.finalize(self, _finish, pieces, response, self.on_close)

    # --- iteration -------------------------------------------------------------------------

    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> str:
        if self.closed:
            raise StopIteration
        try:
            piece = next(self._pieces)
        except StopIteration:
            self.close()
            raise
        except BaseException:
            was_closed = self.closed
            self.close()
            if was_closed:  # closed from another thread while reading: a normal end
                raise StopIteration from None
            raise
        self._parts.append(piece)
        return piece

    def close(self) -> None:
        """Stop reading, close the response and run the on_close callbacks (once; safe
        to call again)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "ChatStream":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    # --- what is known about the answer ------------------------------------------------------

    @property
    def content(self) -> str:
        """The text read so far (all of it, once the stream is exhausted)."""
        return "".join(self._parts)

    @property
    def model(self) -> str:
        return self._state.model

    @property
    def request_id(self) -> Optional[str]:
        return self._state.request_id

    @property
    def usage(self) -> Optional[Usage]:
        return self._state.usage

    @property
    def tool_calls(self) -> Tuple[ToolCall, ...]:
        """The tool calls the model asked for, assembled once the stream has ended
        (() before that, and when it asked for none)."""
        return self._state.tool_calls

    @property
    def finish_reason(self) -> Optional[str]:
        return self._state.finish_reason

    @property
    def rate_limits(self) -> Optional[LimitReport]:
        """The response's rate-limit headers (None when the server sent none)."""
        return self._state.rate_limits

    @property
    def parsed(self) -> Any:
        """With ``response_format``: the whole answer's JSON (a dataclass instance for a
        dataclass format), checked against the schema, as ``ChatResult.parsed`` is; None
        without one. Read it once the stream is exhausted.

        Raises:
            InvalidResponseError: the answer (so far) is not JSON or does not match.
        """
        fmt = self._state.response_format
        if fmt is None:
            return None
        from .request._structured import parse_answer  # only structured streams need it

        return parse_answer(self.content, fmt, request_id=self._state.request_id)

    def result(self) -> ChatResult:
        """What has been read, as a :class:`ChatResult` (for caches and usage totals)."""
        state = self._state
        return ChatResult(content=self.content, model=state.model, finish_reason=state.finish_reason,
                          usage=state.usage, request_id=state.request_id, tool_calls=state.tool_calls)

    def __repr__(self) -> str:
        status = "closed" if self.closed else "open"
        return f"<ChatStream {self.model} {status}, {len(self._parts)} pieces>"
