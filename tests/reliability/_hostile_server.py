"""A tiny HTTP server that misbehaves on purpose, over plain sockets (no http.server:
it must be able to send what no well-behaved library would).

The first path segment picks the behaviour: ``http://127.0.0.1:PORT/<mode>/v1`` as
base_url makes every request to it meet ``<mode>``. Each connection is served by its own
thread and ends when the client goes away, the server stops, or
:data:`MAX_CONNECTION_SECONDS` pass (so a test can never hang on it).
"""

import json
import socket
import struct
import threading
import time
import zlib
from typing import Callable, Dict, List, Optional

MAX_CONNECTION_SECONDS = 60.0

_OK_BODY = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}]}).encode()


def _gzip_bomb(decompressed_mb: int) -> bytes:
    """``decompressed_mb`` MiB of zeros, gzipped (about 1 KiB per MiB), built in a blink:
    after a full flush the compressor starts afresh, so each further MiB compresses to
    the same bytes, which are simply repeated."""
    zeros = b"\0" * (1024 * 1024)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    end = packer.flush()  # the last (empty) block and a trailer for 2 MiB: rewritten below
    crc = 0
    for _ in range(decompressed_mb):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, (decompressed_mb * len(zeros)) & 0xFFFFFFFF)
    return head + block * (decompressed_mb - 1) + end[:-8] + trailer


class HostileServer:
    """Start with ``with HostileServer() as server:``; ``server.url(mode)`` is a base_url.
    ``server.requests[mode]`` counts the requests each mode received."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self.requests: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._bomb: Optional[bytes] = None
        self._modes: Dict[str, Callable[[socket.socket, str, str], None]] = {
            "ok": self._ok,
            "slowloris-headers": self._slowloris_headers,
            "slowloris-body": self._slowloris_body,
            "slowloris-unsized-body": self._slowloris_unsized_body,
            "endless-body": self._endless_body,
            "gzip-bomb": self._gzip_bomb,
            "endless-sse-keepalive": self._endless_sse_keepalive,
            "endless-sse-keepalive-unsized": self._endless_sse_keepalive,
            "endless-sse-content": self._endless_sse_content,
            "endless-sse-line": self._endless_sse_line,
            "huge-header": self._huge_header,
            "redirect-loop": self._redirect_loop,
            "invalid-utf8": self._invalid_utf8,
            "huge-error": self._huge_error,
        }

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def __enter__(self) -> "HostileServer":
        self._bomb = _gzip_bomb(512)  # 512 MiB of zeros in about 0.5 MiB
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(5)

    # --- plumbing -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(MAX_CONNECTION_SECONDS)
        started = time.monotonic()
        try:
            with conn:
                while not self._stop.is_set() and time.monotonic() - started < MAX_CONNECTION_SECONDS:
                    request = self._read_request(conn)
                    if request is None:
                        return
                    path = request
                    mode = path.split("/")[1] if path.count("/") >= 2 else ""
                    with self._lock:
                        self.requests[mode] = self.requests.get(mode, 0) + 1
                    handler = self._modes.get(mode)
                    if handler is None:
                        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                        continue
                    handler(conn, mode, path)
        except OSError:
            pass  # the client went away: what these tests expect of it

    def _read_request(self, conn: socket.socket) -> Optional[str]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return lines[0].split(" ")[1]

    def _alive(self, started: float) -> bool:
        return not self._stop.is_set() and time.monotonic() - started < MAX_CONNECTION_SECONDS

    def _drip(self, conn: socket.socket, data: bytes, every: float) -> None:
        started = time.monotonic()
        for byte in data:
            if not self._alive(started):
                return
            conn.sendall(bytes([byte]))
            self._stop.wait(every)

    # --- behaviours -----------------------------------------------------------------------

    def _ok(self, conn: socket.socket, mode: str, path: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(_OK_BODY) + _OK_BODY)

    def _slowloris_headers(self, conn: socket.socket, mode: str, path: str) -> None:
        self._drip(conn, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000, every=0.5)

    def _slowloris_body(self, conn: socket.socket, mode: str, path: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(_OK_BODY))
        self._drip(conn, _OK_BODY, every=0.5)

    def _slowloris_unsized_body(self, conn: socket.socket, mode: str, path: str) -> None:
        # No length, no chunks: the body ends when the connection does (HTTP/1.0 style),
        # so a body cut at the deadline looks complete to the reader.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        self._drip(conn, _OK_BODY, every=0.5)

    def _endless_body(self, conn: socket.socket, mode: str, path: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"[" * 65536
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
        started = time.monotonic()
        while self._alive(started):
            conn.sendall(chunk)

    def _gzip_bomb(self, conn: socket.socket, mode: str, path: str) -> None:
        assert self._bomb is not None
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(self._bomb) + self._bomb)

    def _sse_head(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

    @staticmethod
    def _chunk(data: bytes) -> bytes:
        return b"%x\r\n" % len(data) + data + b"\r\n"

    def _endless_sse_keepalive(self, conn: socket.socket, mode: str, path: str) -> None:
        unsized = mode.endswith("-unsized")  # no chunks: the stream ends with the connection
        if unsized:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        else:
            self._sse_head(conn)
        frame = (lambda data: data) if unsized else self._chunk
        first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}
        conn.sendall(frame(b"data: " + json.dumps(first).encode() + b"\n\n"))
        started = time.monotonic()
        while self._alive(started):
            conn.sendall(frame(b": keep-alive\n\n"))
            self._stop.wait(0.2)

    def _endless_sse_content(self, conn: socket.socket, mode: str, path: str) -> None:
        self._sse_head(conn)
        event = {"choices": [{"index": 0, "delta": {"content": "more "}}]}
        data = self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
        started = time.monotonic()
        while self._alive(started):
            conn.sendall(data)
            self._stop.wait(0.05)

    def _endless_sse_line(self, conn: socket.socket, mode: str, path: str) -> None:
        self._sse_head(conn)
        first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]}
        conn.sendall(self._chunk(b"data: " + json.dumps(first).encode() + b"\n\n"))
        piece = self._chunk(b"data: " + b"x" * 65530)
        started = time.monotonic()
        while self._alive(started):
            conn.sendall(piece)

    def _huge_header(self, conn: socket.socket, mode: str, path: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * (1024 * 1024) + b"\r\nContent-Length: 0\r\n\r\n")

    def _redirect_loop(self, conn: socket.socket, mode: str, path: str) -> None:
        conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                     % path.encode())

    def _invalid_utf8(self, conn: socket.socket, mode: str, path: str) -> None:
        body = _OK_BODY.replace(b'"fine"', b'"fi\xff\xfene"')
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)

    def _huge_error(self, conn: socket.socket, mode: str, path: str) -> None:
        message = b'{"error": {"message": "overloaded, sorry"}, "padding": "'
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (300 * 1024 * 1024) + message)
        piece = b"p" * 65536
        started = time.monotonic()
        while self._alive(started):
            conn.sendall(piece)
