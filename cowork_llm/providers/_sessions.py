"""How requests leave: the transport check (no key in clear text), the socket timeouts,
and one :class:`requests.Session` per thread, each with our User-Agent and the guarded
connections of :mod:`._guard`.
"""

import ipaddress
import itertools
import threading
import weakref
from typing import Dict, Optional, Tuple

import requests

from .._version import __version__
from ..errors import ConfigError
from . import _body, _guard

__all__ = [
    "USER_AGENT",
    "MAX_REDIRECTS",
    "CREDENTIAL_HEADERS",
    "SessionPool",
    "new_session",
    "check_transport",
    "request_timeouts",
]

USER_AGENT = f"cowork-llm/{__version__}"
#: Redirects followed before giving up (each one carries the request and, on the same
#: host, its key: requests' default of 30 sent the key 31 times around a loop).
MAX_REDIRECTS = 5
_MAX_CONNECT_TIMEOUT = 10.0


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(base_url: str, host: str, allow_insecure_http: bool, *, key: str) -> None:
    """Refuse to send an API key in clear text over the network.

    Raises:
        ConfigError: ``base_url`` is ``http://`` to a host that is not loopback and
            ``allow_insecure_http`` is off. ``key`` names the setting in the message.
    """
    if base_url.lower().startswith("https://") or allow_insecure_http or _is_loopback(host):
        return
    raise ConfigError(
        key=f"{key}.base_url",
        message=f"{key}.base_url {base_url!r} is plain http to {host!r}, which would send the API key "
        f"unencrypted: use https://, or set {key}.allow_insecure_http = true if the network "
        "is trusted"
    )


def request_timeouts(timeout_seconds: float, remaining: Optional[float] = None) -> Tuple[float, float]:
    """(connect, read) timeouts for each socket operation: a dead host is noticed within
    10 s even when a slow answer may take minutes; neither outlasts ``remaining`` (the
    attempt's deadline, which :mod:`._guard` enforces for the attempt as a whole)."""
    read = timeout_seconds if remaining is None else max(0.001, min(timeout_seconds, remaining))
    return (min(_MAX_CONNECT_TIMEOUT, read), read)


# Headers that carry a key. requests drops Authorization on a redirect to another host,
# but knows nothing of Anthropic's x-api-key (measured: forwarded on a 307/308).
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key")


class _KeySafeSession(requests.Session):
    """A Session that drops every credential header where requests drops Authorization:
    on a redirect to another host, port or scheme."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if response.request.url and prepared_request.url and self.should_strip_auth(
                response.request.url, prepared_request.url):
            for name in CREDENTIAL_HEADERS:
                prepared_request.headers.pop(name, None)


class _SessionEntry:
    """A thread's session, held by that thread's local storage only: when the thread
    ends, the entry is freed and its finalizer closes the session (see SessionPool)."""

    __slots__ = ("generation", "session", "__weakref__")

    def __init__(self, generation: int, session: requests.Session) -> None:
        self.generation = generation
        self.session = session


def new_session() -> requests.Session:
    """A session as the providers use it: our User-Agent, only the encodings _body can
    inflate within a cap, few redirects, and connections a _guard.Guard can cut."""
    session = _KeySafeSession()
    session.headers["User-Agent"] = USER_AGENT
    # Only what _body can inflate within a cap (brotli or zstd would be decoded by urllib3
    # in one piece, whatever the size).
    session.headers["Accept-Encoding"] = _body.ACCEPT_ENCODING
    session.max_redirects = MAX_REDIRECTS
    adapter = _guard.GuardedAdapter()  # connections a deadline can cut (see _guard)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _close_session(sessions: Dict[int, requests.Session], key: int) -> None:
    session = sessions.pop(key, None)  # dict.pop is atomic: no lock, as this may run anywhere
    if session is not None:
        session.close()


class SessionPool:
    """One :class:`requests.Session` per live thread (requests does not promise a Session
    is thread-safe), each keeping its connections alive.

    A thread that ends takes its session with it: the session (and its sockets) is closed
    as the thread's local storage is freed, so a program that starts a short-lived thread
    per job does not pile up sockets until it runs out of file descriptors.
    :meth:`close` closes the sessions of every thread; a thread that makes a request
    after it gets a fresh session.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: Dict[int, requests.Session] = {}
        self._keys = itertools.count()
        self._generation = 0  # bumped by close(), so threads drop their closed session

    def get(self) -> requests.Session:
        """This thread's session, created on first use."""
        cached = getattr(self._local, "entry", None)
        if cached is not None and cached.generation == self._generation:
            return cached.session  # type: ignore[no-any-return]
        session = new_session()
        key = next(self._keys)
        entry = _SessionEntry(self._generation, session)
        weakref.finalize(entry, _close_session, self._sessions, key)
        with self._lock:
            self._sessions[key] = session
        self._local.entry = entry
        return session

    def __len__(self) -> int:
        """How many sessions are open (one per live thread that made a request)."""
        return len(self._sessions)

    def close(self) -> None:
        """Close every session of every thread. Safe to call twice."""
        with self._lock:
            self._generation += 1
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()
