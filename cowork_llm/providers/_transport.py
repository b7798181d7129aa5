"""What went wrong on the way to the server, in one phrase for a person: requests nests
urllib3's errors several levels deep, and their text (300 characters of pool and retry
details) is for a debug log, not for an error message.
"""

import socket
import ssl
from typing import Iterator, List, Optional

import requests
import urllib3.exceptions

__all__ = ["causes", "describe_transport_failure"]


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps, innermost last (at most 12): requests nests urllib3's
    errors in ``args[0]``, urllib3 its causes in ``reason``."""
    seen = 0
    current: Optional[BaseException] = error
    while current is not None and seen < 12:
        yield current
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError wraps its cause here
        if not isinstance(reason, BaseException):
            reason = None
        current = nested or reason or current.__cause__ or current.__context__
        seen += 1


def describe_transport_failure(error: BaseException, timeout: float, host: str) -> str:
    """One phrase in our words for a failure to reach ``host`` (DNS, refused, TLS,
    timeout, else the innermost error, cut to 200 characters). Never raises."""
    chain = list(causes(error))
    if any(isinstance(e, (requests.exceptions.SSLError, ssl.SSLError)) for e in chain):
        return f"TLS error: {_innermost(chain)}"
    if any(isinstance(e, (socket.gaierror, urllib3.exceptions.NameResolutionError)) for e in chain):
        return f"DNS lookup failed: {host!r} does not resolve"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused: nothing is listening there"
    if any(isinstance(e, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)) for e in chain):
        return f"timed out connecting after {timeout:g} s"
    if any(isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, socket.timeout)) for e in chain):
        return f"no answer within {timeout:g} s"
    return f"connection failed: {_innermost(chain)}"


def _innermost(chain: List[BaseException]) -> str:
    error = chain[-1]
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
