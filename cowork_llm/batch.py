"""run_batch(): many prompts through one shared client, resumable after anything.

Worker threads share the client (its limiter, not the worker count, sets the pace) and
append one JSON line per finished item to the output (see :mod:`.batch_journal`)::

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
(:func:`~cowork_llm.limiter_cancel.cancel_on`), so their items are not sent and get no
line. Only one run may write an output file at a time (:func:`.batch_journal.lock_output`).
"""

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

from .batch_input import BatchInputError, BatchItem, InputProblem, prepare_items, read_batch_file
from .batch_journal import (
    BatchOutputError,
    JournalWriter,
    OutputLockedError,
    drop_error_lines,
    lock_output,
    recover_journal,
)
from .batch_progress import format_duration, make_progress
from .errors import (
    AcquireCancelled,
    AuthenticationError,
    ConfigError,
    LimiterBackendError,
    LlmApiError,
    LlmError,
    NotFoundError,
    QuotaExceededError,
)
from .limiter_cancel import cancel_on
from .llm import ChatResult, Llm

__all__ = [
    "run_batch",
    "BatchSummary",
    "BatchInterrupted",
    "BatchItem",
    "BatchInputError",
    "BatchOutputError",
    "OutputLockedError",
    "InputProblem",
    "read_batch_file",
    "FATAL_ERRORS",
]

logger = logging.getLogger(__name__)

# Errors about the setup, not the item: the next item would fail the same way.
FATAL_ERRORS: Tuple[Type[BaseException], ...] = (
    AuthenticationError, QuotaExceededError, NotFoundError, ConfigError, LimiterBackendError,
)
_TICK_SECONDS = 0.2  # how often the waiting thread updates the progress display


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


def _success_record(item: BatchItem, result: ChatResult) -> Dict[str, Any]:
    usage = result.usage
    return {
        "id": item.id,
        "output": result.content,
        "model": result.model,
        "usage": None if usage is None else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "finish_reason": result.finish_reason,
    }


def _error_record(item: BatchItem, exc: BaseException) -> Dict[str, Any]:
    return {"id": item.id, "error": {
        "type": type(exc).__name__,
        "message": str(exc) or repr(exc),
        "status_code": exc.status_code if isinstance(exc, LlmApiError) else None,
    }}


class _Run:
    """The state one batch run shares between its worker threads."""

    def __init__(self, client: Llm, todo: List[BatchItem], writer: JournalWriter, progress: Any,
                 max_consecutive_failures: Optional[int], stop_event: Optional[threading.Event]) -> None:
        self.client, self.writer, self.progress = client, writer, progress
        self.max_failures = max_consecutive_failures
        self.lock = threading.Lock()
        self.pending = iter(todo)
        self.stop = threading.Event()
        self.stop_event = stop_event  # the caller's: read, never set
        self.counts = {"succeeded": 0, "failed": 0, "started": 0,
                       "prompt_tokens": 0, "completion_tokens": 0}
        self.consecutive_failures = 0
        self.stopped_reason: Optional[str] = None
        self.write_error: Optional[BaseException] = None
        self._unexpected_logged = False

    def stop_because(self, reason: str) -> None:
        with self.lock:
            if self.stopped_reason is None:
                self.stopped_reason = reason
                logger.error("stopping: %s", reason)
        self.stop.set()

    def stopping(self) -> bool:
        return self.stop.is_set() or (self.stop_event is not None and self.stop_event.is_set())

    def work(self, finished: threading.Event) -> None:
        try:
            while not self.stopping():
                with self.lock:
                    item = next(self.pending, None)
                    if item is None:
                        return
                    self.counts["started"] += 1
                outcome = self._call(item)
                if outcome is None:  # not sent because we are stopping: it runs next time
                    with self.lock:
                        self.counts["started"] -= 1
                    return
                self._finish(item, outcome)
        finally:
            finished.set()

    def _call(self, item: BatchItem) -> Optional[Union[ChatResult, BaseException]]:
        """The item's answer or error; None when stopping cancelled its wait for a
        limiter slot, so no request was sent."""
        try:
            # A worker still queued in the limiter when the batch stops must not send its
            # request afterwards: the stop cancels its wait (an admitted one runs on).
            with ExitStack() as scope:
                scope.enter_context(cancel_on(self.stop))
                if self.stop_event is not None:
                    scope.enter_context(cancel_on(self.stop_event))
                return self.client.chat(item.messages, temperature=item.temperature,
                                        max_tokens=item.max_tokens)
        except AcquireCancelled as exc:
            return None if self.stopping() else exc  # else not our stop: record it
        except FATAL_ERRORS as exc:
            self.stop_because(f"{type(exc).__name__}: {exc} (every other item would fail the same way)")
            return exc
        except (ValueError, LlmError) as exc:  # expected (a limiter timeout too): record it
            return exc
        except Exception as exc:  # a bug somewhere: record it, keep the thread alive
            if not self._unexpected_logged:
                self._unexpected_logged = True
                logger.error("unexpected error on item %r", item.id, exc_info=True)
            return exc

    def _finish(self, item: BatchItem, outcome: Union[ChatResult, BaseException]) -> None:
        if isinstance(outcome, BaseException):
            record, failed = _error_record(item, outcome), True
        else:
            record, failed = _success_record(item, outcome), False
        # Written and counted under one lock, so once the writer is closed the counts
        # say exactly which items have a line.
        with self.lock:
            try:
                written = self.writer.write(record)
            except (OSError, TypeError, ValueError) as exc:
                self.write_error, written = exc, False
            if written:
                self.counts["failed" if failed else "succeeded"] += 1
                if isinstance(outcome, ChatResult) and outcome.usage is not None:
                    self.counts["prompt_tokens"] += outcome.usage.prompt_tokens
                    self.counts["completion_tokens"] += outcome.usage.completion_tokens
                self.progress.advance(failed)
                self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
            too_many = (written and self.max_failures is not None
                        and self.consecutive_failures >= self.max_failures)
        if self.write_error is not None:
            self.stop_because(f"cannot write {self.writer.path}: {self.write_error}")
        elif too_many:
            self.stop_because(f"the last {self.consecutive_failures} items all failed "
                              f"(latest: {record['error']['type']}: {record['error']['message']})")

    def wait(self, workers_finished: List[threading.Event]) -> None:
        """Until every launched worker has finished. (Not Thread.join: on CPython 3.11 a
        Ctrl-C inside join() can mark a running thread as stopped.)"""
        for finished in workers_finished:
            while not finished.wait(_TICK_SECONDS):
                with self.lock:
                    self.progress.tick()


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
        BatchOutputError: the output file holds a line that is not a batch result.
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
    run = _Run(client, todo, writer, display, max_consecutive_failures, stop_event)
    launched: List[threading.Event] = []
    interrupts = 0
    abandon = False
    try:
        while True:
            try:
                if interrupts:  # said inside the try: a Ctrl-C while saying it still counts
                    logger.warning("interrupted; finishing the items in flight. Press "
                                   "Ctrl-C again to abandon them (they will run again next time).")
                # A worker counts once its start() returned. One whose start a Ctrl-C cut
                # short is not waited for: it finds `stop` set, or its line is refused by
                # the closed writer and its item counts as not started.
                while len(launched) < min(workers, len(todo)) and not interrupts:
                    finished = threading.Event()
                    threading.Thread(target=run.work, args=(finished,), daemon=True,
                                     name=f"cowork-batch-{len(launched)}").start()
                    launched.append(finished)
                run.wait(launched)
                break
            except KeyboardInterrupt:
                interrupts += 1
                run.stop.set()
                if interrupts > 1:
                    abandon = True
                    break
    finally:
        writer.close()  # from here on, abandoned workers' results are dropped, not written
        display.close()
    with run.lock:
        counts = dict(run.counts)
    summary.succeeded, summary.failed = counts["succeeded"], counts["failed"]
    summary.prompt_tokens, summary.completion_tokens = counts["prompt_tokens"], counts["completion_tokens"]
    summary.not_started = len(todo) - counts["started"]
    unwritten = counts["started"] - counts["succeeded"] - counts["failed"]
    if abandon:
        summary.abandoned = unwritten
    else:  # an item whose line could not be written runs again next time
        summary.not_started += unwritten
    stopped_by_caller = stop_event is not None and stop_event.is_set() and summary.not_started > 0
    summary.interrupted = interrupts > 0 or stopped_by_caller
    summary.stopped_reason = run.stopped_reason
    summary.elapsed_seconds = time.monotonic() - started
    if run.write_error is not None:
        raise run.write_error
    if interrupts:
        raise BatchInterrupted(summary)
    return summary
