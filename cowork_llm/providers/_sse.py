"""Server-sent events (the WHATWG ``text/event-stream`` format) read from a streamed
:class:`requests.Response`, as both chat APIs send their streams.

Two small steps over the bytes :func:`~cowork_llm.providers._body.iter_decoded` reads
(bounded, as they arrive): :func:`iter_lines` (lines ending in CRLF, LF or CR, even when a
chunk boundary falls between a CR and its LF, each at most ``max_line`` bytes) and
:func:`iter_events` (``event:``/``data:``/``id:`` fields, multi-line data, ``:`` comments
ignored).
"""

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional

__all__ = ["SseEvent", "LineTooLong", "MAX_LINE_BYTES", "iter_lines", "iter_events"]

_EOL = re.compile(rb"\r\n|\r|\n")
#: The longest line a stream may send (an event's data line carries one small JSON
#: object; model.max_response_bytes lowers this further when it is smaller).
MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (``message`` unless an ``event:`` field named
    one), its data lines joined with ``\\n``, and the last event id seen."""

    event: str
    data: str
    id: Optional[str] = None


class LineTooLong(Exception):
    """A line went on past ``limit`` bytes without ending."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a stream line is longer than {limit} bytes")
        self.limit = limit


def iter_lines(chunks: Iterable[bytes], *, max_line: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Lines of UTF-8 text, without their terminator. Bytes after the last terminator
    are dropped: a line the stream ended in the middle of is not a line.

    Raises:
        LineTooLong: a line passed ``max_line`` bytes (an endless line would otherwise
            grow in memory for as long as the server sends it).
        UnicodeDecodeError: a line is not UTF-8 (the standard allows nothing else).
    """
    pending: List[bytes] = []  # the unfinished line, in pieces (joined once, not per chunk)
    pending_size = 0
    skip_lf = False  # the previous chunk ended in CR: a LF starting this one is its pair
    first = True
    for chunk in chunks:
        if not chunk:
            continue
        if first:
            chunk = chunk.removeprefix(b"\xef\xbb\xbf")  # a leading BOM is not data
            first = False
        if skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        skip_lf = False
        start = 0
        for match in _EOL.finditer(chunk):  # only the new bytes are searched
            piece = chunk[start:match.start()]
            if pending_size + len(piece) > max_line:
                raise LineTooLong(max_line)
            if pending:
                pending.append(piece)
                piece = b"".join(pending)
                pending, pending_size = [], 0
            yield piece.decode("utf-8")
            start = match.end()
            skip_lf = match.group() == b"\r" and start == len(chunk)
        rest = chunk[start:]
        if rest:
            pending.append(rest)
            pending_size += len(rest)
            if pending_size > max_line:
                raise LineTooLong(max_line)


def iter_events(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events as the WHATWG parsing rules build them: a blank line dispatches the
    fields gathered since the last one; an event without data is dropped. An event
    still open when the lines end is dispatched too (some servers omit the final
    blank line); a cut-off stream shows as a missing end event, not here."""
    data: List[str] = []
    event_type = ""
    last_id: Optional[str] = None
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event_type or "message", "\n".join(data), last_id)
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            last_id = value
        # "retry" and unknown fields are ignored, as the standard says
    if data:
        yield SseEvent(event_type or "message", "\n".join(data), last_id)
