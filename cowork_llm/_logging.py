"""COWORK_LOG_LEVEL: turn the "cowork_llm" logger up or down without touching code.

The library only ever adds a handler of its own when the application configured none,
and that handler steps aside as soon as the application configures logging later
(e.g. ``logging.basicConfig()`` after ``import cowork_llm``), so no line is printed twice.
"""

import logging
import os
import sys
import warnings
from typing import Callable, Optional, Set

__all__ = ["LOG_LEVEL_VARIABLE", "configure_logging_from_env", "install_stderr_handler",
           "use_cli_format", "warn_if_level_invalid"]

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


def configure_logging_from_env(*, warn: bool = True,
                               report: Optional[Callable[[str], None]] = None) -> Optional[int]:
    """Apply COWORK_LOG_LEVEL (debug, info, warning or error) to the package logger.

    Returns the level set, or None when the variable is unset or invalid. An invalid
    value is told once per process and value, never raised: through ``report(message)``
    when given (the CLI prints one plain line), else as a RuntimeWarning naming the
    variable; with ``warn=False`` (at import) it is left for :func:`warn_if_level_invalid`,
    so the CLI can still say it its own way.
    """
    raw = os.environ.get(LOG_LEVEL_VARIABLE, "").strip()
    if not raw:
        return None
    level = _LEVELS.get(raw.lower())
    if level is None:
        if raw in _warned_values or not (warn or report):
            return None
        _warned_values.add(raw)
        message = f"{LOG_LEVEL_VARIABLE}={raw!r} is not one of {', '.join(_LEVELS)}; ignoring it"
        if report is not None:
            report(message)
        else:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return None
    logging.getLogger(PACKAGE_LOGGER).setLevel(level)
    install_stderr_handler()
    return level


def warn_if_level_invalid() -> None:
    """The RuntimeWarning for an invalid COWORK_LOG_LEVEL, if not told yet (load_config
    and create_llm_client call this: the import only notes it). Never raises."""
    raw = os.environ.get(LOG_LEVEL_VARIABLE, "").strip()
    if raw and raw.lower() not in _LEVELS and raw not in _warned_values:
        _warned_values.add(raw)
        warnings.warn(f"{LOG_LEVEL_VARIABLE}={raw!r} is not one of {', '.join(_LEVELS)}; ignoring it",
                      RuntimeWarning, stacklevel=3)


class _CliFormatter(logging.Formatter):
    """``cowork-llm batch: 12/40 done, ...`` for INFO; ``cowork-llm batch: warning: ...``
    above: the CLI's own lines and the library's log lines in one format."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{self.prefix}: {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def use_cli_format(prefix: str) -> Callable[[], None]:
    """Give the package's stderr handler (when installed) the CLI's line format; returns
    the function that puts the previous format back. At DEBUG the timestamped format
    stays: that is for reading a run afterwards."""
    if logging.getLogger(PACKAGE_LOGGER).getEffectiveLevel() <= logging.DEBUG:
        return lambda: None
    changed = []
    for handler in logging.getLogger(PACKAGE_LOGGER).handlers:
        if isinstance(handler, _FallbackStderrHandler):
            changed.append((handler, handler.formatter))
            handler.setFormatter(_CliFormatter(prefix))

    def restore() -> None:
        for handler, formatter in changed:
            handler.setFormatter(formatter)

    return restore
