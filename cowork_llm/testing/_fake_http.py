"""The threading HTTP server under FakeLlmServer: one thread per connection, each
connection and thread known, so ``stop()`` can end them (keep-alive clients included).
"""

import itertools
import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, List, Tuple

from ._fake_handler import FakeLlmHandler

if TYPE_CHECKING:
    from .fake_server import FakeLlmServer

__all__ = ["FakeHttpServer"]

logger = logging.getLogger(__name__)


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
