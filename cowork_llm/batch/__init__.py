"""Batch runs: many prompts through one shared client, resumable after anything.

- :mod:`._runner`: :func:`run_batch` and the :class:`BatchSummary` of a run.
- :mod:`._input`: reading and checking the input (JSON lines, line numbers in errors).
- :mod:`._journal`: the output file: one JSON line per item, its lock, recovery.
- :mod:`._pool`: the worker threads, stopping, Ctrl-C.
- :mod:`._progress`: the progress bar or log lines.
"""

from ..errors import BatchInputError, BatchOutputError, OutputLockedError
from ._input import BatchItem, InputProblem, read_batch_file
from ._pool import FATAL_ERRORS
from ._progress import PROGRESS_MODES
from ._runner import BatchInterrupted, BatchSummary, run_batch

__all__ = [
    "BatchInputError",
    "BatchInterrupted",
    "BatchItem",
    "BatchOutputError",
    "BatchSummary",
    "FATAL_ERRORS",
    "InputProblem",
    "OutputLockedError",
    "PROGRESS_MODES",
    "read_batch_file",
    "run_batch",
]
