"""The batch's worker pool: threads sharing one client, when to stop, and Ctrl-C.

Workers take items one at a time, call the client, and write one journal line per
finished item. The pool stops starting items on a fatal error (:data:`FATAL_ERRORS`),
after ``max_consecutive_failures`` failures in a row, when the output cannot be written,
when the caller's ``stop_event`` is set, or on Ctrl-C; a second Ctrl-C abandons the
items in flight. What the run did is read from :meth:`WorkerPool.counts` afterwards.
"""

import dataclasses
import logging
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Type, Union

from ..errors import (
    AcquireCancelled,
    AuthenticationError,
    ConfigError,
    LimiterBackendError,
    LlmApiError,
    LlmError,
    NotFoundError,
    QuotaExceededError,
)
from ..llm import Llm
from ..rate_limiter._cancel import cancel_on
from ..results import ChatResult
from ._input import BatchItem
from ._journal import JournalWriter
from ._progress import Progress

__all__ = ["FATAL_ERRORS", "PoolCounts", "WorkerPool"]


logger = logging.getLogger(__name__)

# Errors about the setup, not the item: the next item would fail the same way.
FATAL_ERRORS: Tuple[Type[BaseException], ...] = (
    AuthenticationError, QuotaExceededError, NotFoundError, ConfigError, LimiterBackendError,
)
_TICK_SECONDS = 0.2  # how often the waiting thread updates the progress display


def _success_record(item: BatchItem, result: ChatResult) -> Dict[str, Any]:
    usage = None if result.usage is None else {  # the details only where the provider said
        name: value for name, value in dataclasses.asdict(result.usage).items() if value is not None}
    record = {
        "id": item.id,
        "output": result.content,
        "model": result.model,
        "usage": usage,
        "finish_reason": result.finish_reason,
    }
    if "response_format" in item.options:
        record["parsed"] = result.parsed
    return record


def _error_record(item: BatchItem, exc: BaseException) -> Dict[str, Any]:
    return {"id": item.id, "error": {
        "type": type(exc).__name__,
        "message": str(exc) or repr(exc),
        "status_code": exc.status_code if isinstance(exc, LlmApiError) else None,
    }}


@dataclass
class PoolCounts:
    """Items started and finished (with a journal line) by the pool, and their tokens."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def unwritten(self) -> int:
        """Started items without a line: abandoned, or their line could not be written."""
        return self.started - self.succeeded - self.failed


class WorkerPool:
    """Runs ``todo`` through ``client`` on worker threads; the state they share."""

    def __init__(self, client: Llm, todo: List[BatchItem], writer: JournalWriter, progress: Progress,
                 max_consecutive_failures: Optional[int], stop_event: Optional[threading.Event]) -> None:
        self.client, self.writer, self.progress = client, writer, progress
        self.max_failures = max_consecutive_failures
        self.lock = threading.Lock()
        self.todo_count = len(todo)
        self.pending = iter(todo)
        self.stop = threading.Event()
        self.stop_event = stop_event  # the caller's: read, never set
        self._counts = PoolCounts()
        self.consecutive_failures = 0
        self.stopped_reason: Optional[str] = None
        self.write_error: Optional[BaseException] = None
        self.interrupts = 0  # Ctrl-Cs seen by run()
        self._unexpected_logged = False

    @property
    def interrupted(self) -> bool:
        return self.interrupts > 0

    @property
    def abandoned(self) -> bool:
        """A second Ctrl-C: the items in flight were not waited for."""
        return self.interrupts > 1

    def counts(self) -> PoolCounts:
        """A copy of the counts, consistent with the journal once the writer is closed."""
        with self.lock:
            return dataclasses.replace(self._counts)

    def run(self, workers: int) -> None:
        """Start up to ``workers`` threads and wait for them. The first Ctrl-C stops new
        items and waits for the ones in flight, a second one returns at once (see
        :attr:`interrupted`, :attr:`abandoned`). Close the writer right after: an
        abandoned worker's late line is then dropped."""
        launched: List[threading.Event] = []
        while True:
            try:
                if self.interrupts:  # said inside the try: a Ctrl-C while saying it still counts
                    logger.warning("interrupted; finishing the items in flight. Press "
                                   "Ctrl-C again to abandon them (they will run again next time).")
                else:
                    self._launch(launched, min(workers, self.todo_count))
                self._wait(launched)
                return
            except KeyboardInterrupt:
                self.interrupts += 1
                self.stop.set()
                if self.abandoned:
                    return

    def _launch(self, launched: List[threading.Event], count: int) -> None:
        """Start workers until ``count`` run. A worker counts once its start() returned.
        One whose start a Ctrl-C cut short is not waited for: it finds `stop` set, or its
        line is refused by the closed writer and its item counts as not started."""
        while len(launched) < count:
            finished = threading.Event()
            threading.Thread(target=self._work, args=(finished,), daemon=True,
                             name=f"cowork-batch-{len(launched)}").start()
            launched.append(finished)

    def _wait(self, workers_finished: List[threading.Event]) -> None:
        """Until every launched worker has finished. (Not Thread.join: on CPython 3.11 a
        Ctrl-C inside join() can mark a running thread as stopped.)"""
        for finished in workers_finished:
            while not finished.wait(_TICK_SECONDS):
                with self.lock:
                    self.progress.tick()

    def stop_because(self, reason: str) -> None:
        with self.lock:
            if self.stopped_reason is None:
                self.stopped_reason = reason
                logger.error("stopping: %s", reason)
        self.stop.set()

    def stopping(self) -> bool:
        return self.stop.is_set() or (self.stop_event is not None and self.stop_event.is_set())

    def _work(self, finished: threading.Event) -> None:
        try:
            while not self.stopping():
                with self.lock:
                    item = next(self.pending, None)
                    if item is None:
                        return
                    self._counts.started += 1
                outcome = self._call(item)
                if outcome is None:  # not sent because we are stopping: it runs next time
                    with self.lock:
                        self._counts.started -= 1
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
                                        max_tokens=item.max_tokens, **item.options)
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
                self._count(outcome)
                self.progress.advance(failed)
                self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
            too_many = (written and self.max_failures is not None
                        and self.consecutive_failures >= self.max_failures)
        if self.write_error is not None:
            self.stop_because(f"cannot write {self.writer.path}: {self.write_error}")
        elif too_many:
            self.stop_because(f"the last {self.consecutive_failures} items all failed "
                              f"(latest: {record['error']['type']}: {record['error']['message']})")

    def _count(self, outcome: Union[ChatResult, BaseException]) -> None:
        """Count an item whose line was written. Called with the lock held."""
        if isinstance(outcome, BaseException):
            self._counts.failed += 1
            return
        self._counts.succeeded += 1
        if outcome.usage is not None:
            self._counts.prompt_tokens += outcome.usage.prompt_tokens
            self._counts.completion_tokens += outcome.usage.completion_tokens
