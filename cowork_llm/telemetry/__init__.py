"""Watching calls: the observer interface every client reports to, and OpenTelemetry.

- :mod:`._observer`: :class:`Observer` / :class:`CallObservation` / :class:`CallInfo`, the
  interface :class:`~cowork_llm.client.RateLimitedLlm` reports each call's life to.
- :mod:`._otel`: :class:`OpenTelemetryObserver`, GenAI spans and metrics (extra ``otel``).
- :mod:`._semconv`: the names it emits and the environment switches it honours.

When ``opentelemetry-api`` is installed, :func:`create_llm_client` reports to the shared
:func:`default_observers` (spans and metrics go to whatever SDK the application set up;
none set up: the API's no-op). When it is not installed, nothing of OpenTelemetry is
imported. ``OTEL_SDK_DISABLED=true`` turns it off too.
"""

import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any, Optional, Tuple

from ._observer import CallInfo, CallObservation, Observer

if TYPE_CHECKING:
    from ._otel import OpenTelemetryObserver

__all__ = ["CallInfo", "CallObservation", "default_observers", "Observer",
           "OpenTelemetryObserver", "otel_available"]

_lock = threading.Lock()
_defaults: Optional[Tuple[Observer, ...]] = None


def otel_available() -> bool:
    """True when ``opentelemetry-api`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


def default_observers() -> Tuple[Observer, ...]:
    """The observers clients use unless given others: one process-wide
    :class:`OpenTelemetryObserver` (on the global tracer and meter providers) when the
    API is installed and OTEL_SDK_DISABLED is not ``true``; otherwise none. Never raises."""
    global _defaults
    if _defaults is None:
        with _lock:
            if _defaults is None:
                disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
                if disabled or not otel_available():
                    _defaults = ()
                else:
                    from ._otel import OpenTelemetryObserver

                    _defaults = (OpenTelemetryObserver(),)
    return _defaults


def __getattr__(name: str) -> Any:
    """``OpenTelemetryObserver`` is imported on first use (it imports opentelemetry).

    Raises:
        ImportError: opentelemetry-api is not installed (``pip install cowork-llm[otel]``).
        AttributeError: no such name.
    """
    if name == "OpenTelemetryObserver":
        if not otel_available():
            raise ImportError("OpenTelemetryObserver needs opentelemetry-api: "
                              "pip install 'cowork-llm[otel]'")
        from ._otel import OpenTelemetryObserver

        return OpenTelemetryObserver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
