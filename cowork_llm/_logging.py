"""COWORK_LOG_LEVEL: turn the "cowork_llm" logger up or down without touching code.

The library only ever adds a handler of its own when the application configured none,
and that handler steps aside as soon as the application configures logging later
(e.g. ``logging.basicConfig()`` after ``import cowork_llm``), so no line is printed twice.
"""

import logging
import os
import sys
import warnings
from typing import Optional, Set

__all__ = ["LOG_LEVEL_VARIABLE", "configure_logging_from_env", "install_stderr_handler"]

LOG_LEVEL_VARIABLE = "COWORK_LOG_LEVEL"
PACKAGE_LOGGER = "cowork_llm"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO,
           "warning": logging.WARNING, "error": logging.ERROR}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_warned_values: Set[str] = set()  # invalid COWORK_LOG_LEVEL values already warned about


class _FallbackStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stderr while the application has no handler of its own."""

    def handle(self, record: logging.LogRecord) -> bool:
        if _application_has_handlers():
            return False  # the record propagates to the application's handlers instead
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # follow redirections made after we were installed
        super().emit(record)


def _application_has_handlers() -> bool:
    if logging.getLogger().handlers:
        return True
    ours = logging.getLogger(PACKAGE_LOGGER).handlers
    return any(not isinstance(h, (logging.NullHandler, _FallbackStderrHandler)) for h in ours)


def install_stderr_handler() -> bool:
    """Add the stderr handler to the package logger unless logging is already configured.

    Returns True when the handler is (now or already) installed. Never raises.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    if any(isinstance(h, _FallbackStderrHandler) for h in logger.handlers):
        return True
    if _application_has_handlers():
        return False
    handler = _FallbackStderrHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    return True


def configure_logging_from_env() -> Optional[int]:
    """Apply COWORK_LOG_LEVEL (debug, info, warning or error) to the package logger.

    Returns the level set, or None when the variable is unset or invalid; an invalid
    value gives a RuntimeWarning naming the variable (once per process: the CLI applies
    the variable again after the import did), never an exception.
    """
    raw = os.environ.get(LOG_LEVEL_VARIABLE, "").strip()
    if not raw:
        return None
    level = _LEVELS.get(raw.lower())
    if level is None:
        if raw in _warned_values:
            return None
        _warned_values.add(raw)
        warnings.warn(
            f"{LOG_LEVEL_VARIABLE}={raw!r} is not one of {', '.join(_LEVELS)}; ignoring it",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    logging.getLogger(PACKAGE_LOGGER).setLevel(level)
    install_stderr_handler()
    return level
