"""Reading a response body within a byte cap, counted after decompression.

urllib3 decompresses a whole network read at once: a 64 KiB gzip bomb becomes 64 MB in
one step, and ``response.content`` reads a 2 GB body whole. Here the raw bytes are read
in pieces of at most :data:`READ_SIZE` and inflated by zlib with a bound on each output
(``max_length``), so memory stays within the cap however the bytes were packed.
Only gzip and deflate are asked for (``Accept-Encoding``); anything else is refused.
"""

import zlib
from typing import Callable, Iterator, Optional

import requests
import urllib3.exceptions

__all__ = ["ACCEPT_ENCODING", "READ_SIZE", "BodyTooLarge", "iter_raw", "iter_decoded", "read_body"]

ACCEPT_ENCODING = "gzip, deflate"
READ_SIZE = 65536


class BodyTooLarge(Exception):
    """The decoded body passed the cap. ``limit`` is the cap in bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the response body is larger than {limit} bytes")
        self.limit = limit


class UnsupportedEncoding(Exception):
    """The server compressed the body in a way we did not ask for."""


def iter_raw(response: requests.Response) -> Iterator[bytes]:
    """The body of a ``stream=True`` response as it arrives, still compressed, in pieces
    of at most READ_SIZE bytes (a chunk the server declared as 2 GB is read piecewise).

    Raises:
        requests.RequestException: the transport failed (urllib3's errors wrapped the
            way requests wraps them, so callers map one family).
    """
    raw = response.raw
    try:
        if getattr(raw, "chunked", False) or not hasattr(raw, "read1"):
            # stream(amt) yields each piece of a chunked body as soon as it is read
            yield from raw.stream(READ_SIZE, decode_content=False)
            return
        while True:
            # read1: whatever the socket has, without waiting to fill READ_SIZE
            data = raw.read1(READ_SIZE, decode_content=False)
            if not data:
                return
            yield data
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.HTTPError as exc:  # ReadTimeoutError, SSLError, ...
        raise requests.ConnectionError(exc) from exc


def _decoder(encoding: str) -> Optional["Callable[[bytes], Iterator[bytes]]"]:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS  # zlib-wrapped, as the standard says; raw deflate below
    else:
        raise UnsupportedEncoding(f"the response is compressed with {encoding!r}, which was not asked for")
    inflater = zlib.decompressobj(wbits)
    first = True

    def decode(data: bytes) -> Iterator[bytes]:
        nonlocal inflater, first
        if first and encoding == "deflate" and data and (data[0] & 0x0F) != 8:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
        first = False
        while data:
            out = inflater.decompress(data, READ_SIZE)
            data = inflater.unconsumed_tail
            if out:
                yield out
            elif inflater.eof:
                return  # bytes after the end of the compressed stream are ignored

    return decode


def iter_decoded(response: requests.Response, limit: int,
                 chunks: Optional[Iterator[bytes]] = None) -> Iterator[bytes]:
    """The body decoded, piece by piece, at most ``limit`` bytes in all.

    Raises:
        BodyTooLarge: more than ``limit`` decoded bytes (nothing past the cap is read).
        UnsupportedEncoding: a Content-Encoding other than gzip or deflate.
        zlib.error: the compressed data is corrupt.
        requests.RequestException: the transport failed.
    """
    decode = _decoder(response.headers.get("Content-Encoding", ""))
    total = 0
    for raw in (chunks if chunks is not None else iter_raw(response)):
        for piece in (decode(raw) if decode is not None else (raw,)):
            total += len(piece)
            if total > limit:
                raise BodyTooLarge(limit)
            yield piece


def read_body(response: requests.Response, limit: int, *, truncate: bool = False) -> bytes:
    """The whole decoded body, stored on the response (``response.content`` and
    ``.json()`` then work). With ``truncate``, a longer body is cut at ``limit`` (error
    bodies: only their message matters) and the connection dropped.

    Raises what :func:`iter_decoded` raises (BodyTooLarge only without ``truncate``).
    """
    parts = []
    size = 0
    try:
        for piece in iter_decoded(response, limit):
            parts.append(piece)
            size += len(piece)
    except BodyTooLarge:
        response.close()  # the rest is never read: the connection cannot be reused
        if not truncate:
            raise
        parts.append(b"")
    body = b"".join(parts)
    if truncate:
        body = body[:limit]
    # What requests itself does once it has read a body: later .content/.text/.json()
    # use these bytes instead of reading the (now drained) stream again.
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    return body
