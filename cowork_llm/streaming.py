"""ChatStream: an answer arriving in pieces, tied to the HTTP response it is read from.

A stream must give back what it holds (the connection, and the limiter slot a wrapper
registered in :attr:`ChatStream.on_close`) whichever way the consumer leaves: reading to
the end, ``break`` inside a ``with`` block, :meth:`ChatStream.close`, an error in the
middle, or simply dropping the object. All of these end in one ``weakref.finalize``
callback, which Python runs at most once; it holds no reference to the stream itself,
so dropping the last reference runs it at once (on CPython) rather than at some later
garbage collection.
"""

import logging
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Iterator, List, Optional, Type

from .llm import ChatResult, Usage

__all__ = ["ChatStream", "StreamState"]

logger = logging.getLogger(__name__)


@dataclass
class StreamState:
    """What the provider's reader learns while reading; :class:`ChatStream` shows it.
    Kept apart from the stream so the reader does not reference (and keep alive) it."""

    model: str
    request_id: Optional[str] = None
    usage: Optional[Usage] = None
    finish_reason: Optional[str] = None


def _finish(pieces: Iterator[str], response: Any, callbacks: List[Callable[[], None]]) -> None:
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
    exhausted, closed early, failed mid-stream, or garbage-collected. Register them
    before reading; one added after the stream closed never runs.

    Iterating raises the mapped :class:`~cowork_llm.errors.LlmApiError` when the stream
    fails in the middle (after closing it). A stream is read by one thread at a time;
    :meth:`close` may come from any thread.
    """

    def __init__(self, pieces: Iterator[str], state: StreamState, *, response: Any = None) -> None:
        self._pieces = pieces
        self._state = state
        self._parts: List[str] = []
        self.on_close: List[Callable[[], None]] = []
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
    def finish_reason(self) -> Optional[str]:
        return self._state.finish_reason

    def result(self) -> ChatResult:
        """What has been read, as a :class:`ChatResult` (for caches and usage totals)."""
        state = self._state
        return ChatResult(content=self.content, model=state.model, finish_reason=state.finish_reason,
                          usage=state.usage, request_id=state.request_id)

    def __repr__(self) -> str:
        status = "closed" if self.closed else "open"
        return f"<ChatStream {self.model} {status}, {len(self._parts)} pieces>"
