"""Batch progress: a tqdm bar on a terminal, a periodic plain log line elsewhere.

Both show done/total, failures, the rate and the time left. Counts are those of this run
(items already done by an earlier run are reported once, at the start).
"""

import logging
import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["Progress", "make_progress", "format_duration", "PROGRESS_MODES"]

logger = logging.getLogger(__name__)

PROGRESS_MODES = ("auto", "bar", "log", "none")


def format_duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``3700`` → ``1h01m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts finished items; shows nothing. Callers serialise :meth:`advance`."""

    def __init__(self, total: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self._clock = clock
        self._started = clock()

    def advance(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed

    def tick(self) -> None:
        """Called now and then from the waiting thread."""

    def close(self) -> None:
        """Called once at the end."""

    def status(self) -> str:
        """``12/40 done, 1 failed, 0.50/s, ETA 56s``."""
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.done}/{self.total} done, {self.failed} failed, {rate:.2f}/s"
        if self.done and self.done < self.total:
            text += f", ETA {format_duration((self.total - self.done) / rate)}"
        return text


class LogProgress(Progress):
    """One INFO line on the ``cowork_llm.batch`` logger every ``interval_seconds``."""

    def __init__(self, total: int, *, interval_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(total, clock=clock)
        self._interval = interval_seconds
        self._last_line = self._started

    def tick(self) -> None:
        if self._clock() - self._last_line >= self._interval:
            self._last_line = self._clock()
            logger.info("%s", self.status())

    def close(self) -> None:
        logger.info("%s", self.status())


class BarProgress(Progress):
    """A tqdm bar (done/total, rate, ETA) with the failure count after it."""

    def __init__(self, total: int, *, stream: TextIO) -> None:
        from tqdm import tqdm  # imported here: only a terminal run needs it

        super().__init__(total)
        self._bar = tqdm(total=total, unit="item", desc="batch", file=stream,
                         dynamic_ncols=True, mininterval=0.5)
        self._bar.set_postfix_str("failed=0", refresh=False)

    def advance(self, failed: bool) -> None:
        super().advance(failed)
        if failed:
            self._bar.set_postfix_str(f"failed={self.failed}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def make_progress(mode: str, total: int, *, log_interval_seconds: float = 10.0,
                  stream: Optional[TextIO] = None) -> Progress:
    """The progress display for ``mode``: ``auto`` (a bar when ``stream``, stderr by
    default, is a terminal, else log lines), ``bar``, ``log`` or ``none``.
    Raises ValueError for another mode."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {mode!r}")
    stream = stream if stream is not None else sys.stderr
    if mode == "auto":
        mode = "bar" if stream.isatty() else "log"
    if mode == "bar":
        return BarProgress(total, stream=stream)
    if mode == "log":
        return LogProgress(total, interval_seconds=log_interval_seconds)
    return Progress(total)
