"""``cowork-llm batch INPUT.jsonl -o OUTPUT.jsonl``: many prompts, one resumable run.

Every input line is checked first; problems are listed with their line numbers and
nothing is sent (exit 2) unless ``--skip-invalid`` is given. Results are appended to
OUTPUT as they finish; rerunning the same command skips ids already answered and retries
the ones that failed. The first Ctrl-C lets the requests in flight finish (workers still
waiting for the rate limiter send nothing), a second one abandons them. One run per
output file at a time: another run on the same OUTPUT fails at once. Exit 0 when every
item succeeded, 1 when some failed or were not run, 2 for invalid input or an unusable
(or busy) output file, 130 when interrupted.
"""

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any, List

from .._logging import LOG_LEVEL_VARIABLE
from ..batch import PROGRESS_MODES, BatchInterrupted, BatchSummary, read_batch_file, run_batch
from ..client import create_llm_client
from ..config import load_config
from ..errors import BatchOutputError
from ._common import EXIT_CONFIG, HelpFormatter, add_config_argument, client_observers

__all__ = ["add_parser", "run", "resume_command"]

DEFAULT_LOG_EVERY = 10.0
_SHOWN_PROBLEMS = 50


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="answer every prompt of a JSONL file, resumably",
        description="Send every prompt of a JSONL file through the rate-limited client and "
                    "append one JSON line per answer (or error) to OUTPUT as it finishes. Every "
                    "input line is checked before anything is sent. Rerun the same command to "
                    "resume: answered ids are skipped, failed ones retried. The first Ctrl-C "
                    "lets the requests in flight finish, a second abandons them. Exit 0 when "
                    "every item succeeded, 1 when some failed or were not run, 2 for invalid "
                    "input or an unusable (or busy) output file, 130 when interrupted.",
        epilog='Input lines: {"id": 1, "prompt": "...", "system_prompt": "..."} or '
               '{"id": "a", "messages": [{"role": "user", "content": "..."}]}, each optionally '
               'with the chat options "temperature", "max_tokens", "top_p", "stop", "seed", '
               '"response_format", "reasoning_effort" and "extra_body". Ids are strings or '
               'integers, compared as text (1 and "1" are the same id).',
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT.jsonl", help="one JSON item per line")
    parser.add_argument("-o", "--output", metavar="OUTPUT.jsonl", required=True,
                        help="results are appended here, one JSON line per item")
    parser.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help="threads sharing the client (default: rate_limit.max_concurrent, "
                             "as more would only queue for the limiter, which sets the pace)")
    add_config_argument(parser)
    parser.add_argument("--skip-invalid", action="store_true",
                        help="run the valid lines and report the invalid ones, instead of stopping")
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                        help="a bar on a terminal, else a log line (default auto)")
    parser.add_argument("--log-every", type=_positive_float, default=DEFAULT_LOG_EVERY,
                        metavar="SECONDS", help="seconds between progress log lines (default 10)")
    parser.set_defaults(func=run)


def resume_command(args: argparse.Namespace) -> str:
    """The command line that reruns (and so resumes) this batch."""
    program = ["cowork-llm"]
    started_as = Path(sys.argv[0])
    if started_as.name == "__main__.py" and started_as.parent.name == "cowork_llm":
        program = ["python", "-m", "cowork_llm"]
    words = ["batch", args.input, "-o", args.output]
    if args.workers is not None:
        words += ["--workers", str(args.workers)]
    if args.config:
        words += ["--config", args.config]
    if args.skip_invalid:
        words.append("--skip-invalid")
    if args.progress != "auto":
        words += ["--progress", args.progress]
    if args.log_every != DEFAULT_LOG_EVERY:
        words += ["--log-every", f"{args.log_every:g}"]
    return shlex.join(program + words)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        items, problems = read_batch_file(args.input)
    except OSError as exc:
        _say(f"cowork-llm batch: cannot read {args.input}: {exc.strerror or exc}")
        return EXIT_CONFIG
    if problems:
        for problem in problems[:_SHOWN_PROBLEMS]:
            _say(f"{args.input}: {problem}")
        if len(problems) > _SHOWN_PROBLEMS:
            _say(f"{args.input}: ... and {len(problems) - _SHOWN_PROBLEMS} more invalid lines")
        if not args.skip_invalid:
            _say(f"cowork-llm batch: {len(problems)} invalid line(s) in {args.input}; nothing was "
                 "sent. Fix them, or rerun with --skip-invalid to run the valid lines only.")
            return EXIT_CONFIG
        _say(f"cowork-llm batch: skipping {len(problems)} invalid line(s); running {len(items)}")
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        _say("cowork-llm batch: -o names the input file; choose another output file")
        return EXIT_CONFIG
    if not os.environ.get(LOG_LEVEL_VARIABLE):
        # The progress lines are INFO; show them unless the user chose a level.
        logging.getLogger("cowork_llm.batch").setLevel(logging.INFO)
    config = load_config(args.config)
    limit = config.rate_limit.max_concurrent
    workers = args.workers or limit
    if workers > limit:
        _say(f"cowork-llm batch: note: at most {limit} request(s) run at once "
             f"(rate_limit.max_concurrent); the other workers wait for a slot")
    client = create_llm_client(config, observers=client_observers(args, "batch"))
    retry_logger = logging.getLogger("cowork_llm.retry")
    retry_level = retry_logger.level
    if not os.environ.get(LOG_LEVEL_VARIABLE):
        # Retries are told by the progress-line observer (client_observers), not twice.
        retry_logger.setLevel(logging.ERROR)
    try:
        summary = run_batch(client, items, args.output, workers=workers,
                            progress=args.progress, log_interval_seconds=args.log_every)
    except BatchInterrupted as interrupted:
        summary = interrupted.summary
    except BatchOutputError as exc:
        _say(f"cowork-llm batch: {exc}")
        return EXIT_CONFIG
    except OSError as exc:  # the output (or its .lock/.torn/.rewrite file) cannot be written
        where = f": {exc.filename}" if exc.filename else f" {args.output}"
        _say(f"cowork-llm batch: cannot write the output{where}: {exc.strerror or exc}. "
             "Everything already written is kept; fix that and rerun the same command")
        return EXIT_CONFIG
    finally:
        client.close()
        retry_logger.setLevel(retry_level)
    _report(summary, args)
    return summary.exit_code


def _report(summary: BatchSummary, args: argparse.Namespace) -> None:
    lines: List[str] = summary.lines()
    for line in lines:
        _say(f"cowork-llm batch: {line}")
    if summary.remaining:
        what = "retry the failed items and run the rest" if summary.failed else "continue"
        _say(f"cowork-llm batch: to {what}, run: {resume_command(args)}")
