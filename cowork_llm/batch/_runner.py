"""run_batch(): many prompts through one shared client, resumable after anything.

Worker threads share the client (its limiter, not the worker count, sets the pace) and
append one JSON line per finished item to the output (see :mod:`._journal`)::

    {"id": 7, "output": "...", "model": "...", "usage": {...}, "finish_reason": "stop"}
    {"id": 8, "error": {"type": "BadRequestError", "message": "...", "status_code": 400}}

Output lines come in completion order, not input order: match them by id.
Rerunning with the same output skips ids that have an output and retries the errored
ones (their old error lines are removed first, so the file ends with one line per id).

A failing item never stops the batch, with two exceptions that would fail every item
the same way: an error that says the setup is wrong (:data:`FATAL_ERRORS`: a bad key,
no credit, a wrong URL or model, a broken configuration or limiter), and
``max_consecutive_failures`` items in a row failing. Then no new items start, the
in-flight ones finish, and the summary says why; a rerun picks up where it stopped.

"In flight" means admitted by the rate limiter: a stop (Ctrl-C, ``stop_event``, a fatal
error) cancels the waits of workers still queued for a slot
(:func:`~cowork_llm.rate_limiter.cancel_on`), so their items are not sent and get no
line. Only one run may write an output file at a time (:func:`._journal.lock_output`).

This module keeps a run's books: what is left to do, and the :class:`BatchSummary`. The
worker threads, stopping and Ctrl-C are :mod:`._pool`'s job.
"""

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Union

from ..llm import Llm
from ._input import BatchItem, prepare_items
from ._journal import (
    JournalWriter,
    check_output_path,
    drop_error_lines,
    lock_output,
    recover_journal,
)
from ._pool import WorkerPool
from ._progress import format_duration, make_progress

__all__ = ["run_batch", "BatchSummary", "BatchInterrupted"]

logger = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a batch run did. ``remaining`` items need a rerun (failed, not started,
    abandoned)."""

    output_path: str
    total: int = 0
    already_done: int = 0
    succeeded: int = 0
    failed: int = 0
    not_started: int = 0
    abandoned: int = 0
    interrupted: bool = False
    stopped_reason: Optional[str] = None
    repaired_bytes: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_seconds: float = 0.0

    @property
    def remaining(self) -> int:
        return self.failed + self.not_started + self.abandoned

    @property
    def exit_code(self) -> int:
        """0 all done, 1 some items failed or were not run, 130 interrupted."""
        if self.interrupted:
            return 130
        return 0 if self.remaining == 0 else 1

    def lines(self) -> List[str]:
        """The summary as short lines of text."""
        out = [
            f"{self.succeeded} succeeded, {self.failed} failed"
            + (f", {self.already_done} already done" if self.already_done else "")
            + (f", {self.not_started} not started" if self.not_started else "")
            + (f", {self.abandoned} abandoned in flight" if self.abandoned else "")
            + f" (of {self.total}) in {format_duration(self.elapsed_seconds)}",
            f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion",
            f"output: {self.output_path}",
        ]
        if self.repaired_bytes:
            out.append(f"repaired a half-written last line ({self.repaired_bytes} bytes, saved to "
                       f"{self.output_path}.torn)")
        if self.interrupted:
            out.append("interrupted")
        if self.stopped_reason:
            out.append(f"stopped early: {self.stopped_reason}")
        return out


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`run_batch`; ``summary`` says what was finished. Everything
    written is kept; rerun to continue."""

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__("batch interrupted")
        self.summary = summary


def run_batch(
    client: Llm,
    items: Iterable[Union[BatchItem, Mapping[str, Any]]],
    output_path: Union[str, Path],
    *,
    workers: int = 4,
    progress: str = "auto",
    log_interval_seconds: float = 10.0,
    fsync_interval_seconds: float = 1.0,
    max_consecutive_failures: Optional[int] = 25,
    stop_event: Optional[threading.Event] = None,
) -> BatchSummary:
    """Send every item not yet done in ``output_path`` through ``client``, ``workers``
    threads at a time, appending one result line per item (see the module docstring).

    ``items`` are :class:`BatchItem` or dicts shaped like input lines. Setting
    ``stop_event`` stops like a first Ctrl-C: no new items, in-flight ones finish, and
    the summary comes back with ``interrupted=True``.

    Raises:
        BatchInputError: an invalid item or a repeated id (before any request).
        BatchOutputError: the output file holds a line that is not a batch result, or
            is not a regular file (a directory, a device, a FIFO).
        OutputLockedError: another run is writing the same output (a BatchOutputError;
            raised at once, before the file is read or anything is sent).
        BatchInterrupted: Ctrl-C; in-flight items were finished, or abandoned on a
            second Ctrl-C. Carries the summary.
        OSError: the output cannot be read or written (after stopping the workers).
        ValueError: ``workers`` below 1 or an unknown ``progress`` mode.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    started = time.monotonic()
    checked = prepare_items(items)
    path = Path(output_path)
    check_output_path(path)  # before the lock: "/dev/null.lock" must not be created
    # Held for the whole run (repair, rewrite, appends) and released on every way out.
    with lock_output(path):
        return _run_locked(client, checked, path, started, workers=workers, progress=progress,
                           log_interval_seconds=log_interval_seconds,
                           fsync_interval_seconds=fsync_interval_seconds,
                           max_consecutive_failures=max_consecutive_failures,
                           stop_event=stop_event)


def _run_locked(client: Llm, checked: List[BatchItem], path: Path, started: float, *, workers: int,
                progress: str, log_interval_seconds: float, fsync_interval_seconds: float,
                max_consecutive_failures: Optional[int],
                stop_event: Optional[threading.Event]) -> BatchSummary:
    """run_batch's work, with the output's lock held. Raises as run_batch does."""
    state = recover_journal(path)
    todo = [item for item in checked if item.key not in state.done]
    if state.failed:
        drop_error_lines(path, {item.key for item in todo} & state.failed)
    summary = BatchSummary(str(path), total=len(checked), already_done=len(checked) - len(todo),
                           repaired_bytes=state.repaired_bytes)
    if summary.already_done:
        logger.info("%d of %d items already done in %s; running the other %d",
                    summary.already_done, summary.total, path, len(todo))
    display = make_progress(progress, len(todo), log_interval_seconds=log_interval_seconds)
    writer = JournalWriter(path, fsync_interval_seconds=fsync_interval_seconds)
    pool = WorkerPool(client, todo, writer, display, max_consecutive_failures, stop_event)
    try:
        pool.run(workers)
    finally:
        writer.close()  # from here on, abandoned workers' results are dropped, not written
        display.close()
    counts = pool.counts()
    summary.succeeded, summary.failed = counts.succeeded, counts.failed
    summary.prompt_tokens, summary.completion_tokens = counts.prompt_tokens, counts.completion_tokens
    summary.not_started = len(todo) - counts.started
    if pool.abandoned:
        summary.abandoned = counts.unwritten
    else:  # an item whose line could not be written runs again next time
        summary.not_started += counts.unwritten
    stopped_by_caller = stop_event is not None and stop_event.is_set() and summary.not_started > 0
    summary.interrupted = pool.interrupted or stopped_by_caller
    summary.stopped_reason = pool.stopped_reason
    summary.elapsed_seconds = time.monotonic() - started
    if pool.write_error is not None:
        raise pool.write_error
    if pool.interrupted:
        raise BatchInterrupted(summary)
    return summary
