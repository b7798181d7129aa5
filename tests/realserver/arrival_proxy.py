"""A TCP forwarder in front of a server that records when each HTTP request *arrives*.

Timing assertions about the rate limiter should be made where the requests land, not
where our own code thinks it sent them: this sits on the wire, so a request that the
client delays after the limiter admitted it is measured late, as it should be.

It understands just enough HTTP/1.1: a client sends a request only after the previous
answer on that connection (no pipelining), and a JSON body never begins with a method
name, so a chunk from the client that begins with ``POST ``/``GET `` starts a request.
"""

import socket
import threading
import time
from typing import List, Tuple

_METHODS = (b"POST ", b"GET ")


class ArrivalProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``; ``arrivals`` holds the monotonic
    time and request line of every request, in arrival order."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._arrivals: List[Tuple[float, str]] = []
        self._sockets: List[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept_loop, name="arrival-proxy", daemon=True).start()

    @property
    def arrivals(self) -> List[Tuple[float, str]]:
        with self._lock:
            return list(self._arrivals)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client and data.startswith(_METHODS):
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    with self._lock:
                        self._arrivals.append((time.monotonic(), line))
                sink.sendall(data)
        except OSError:
            pass  # the other side went away
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def __enter__(self) -> "ArrivalProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
