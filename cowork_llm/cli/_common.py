"""What every subcommand shares: the --config option and turning errors into exit codes.

Expected failures print ONE line on stderr (a traceback only with COWORK_LOG_LEVEL=debug):
exit 2 for a configuration error, 1 for an API, limiter or other library error, 130 when
interrupted. Anything else is a bug and keeps its traceback.
"""

import argparse
import os
import sys
import textwrap
import traceback
from typing import Tuple

from .._logging import LOG_LEVEL_VARIABLE, configure_logging_from_env, install_stderr_handler, use_cli_format
from ..config._keys import STRICT
from ..errors import ConfigError, LlmError
from ..telemetry import Observer, default_observers

__all__ = ["add_config_argument", "add_global_arguments", "client_observers", "run_command",
           "HelpFormatter", "EXIT_OK", "EXIT_ERROR", "EXIT_CONFIG",
           "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130
_EXIT_BROKEN_PIPE = 141  # what a shell reports for SIGPIPE


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog to the terminal, as argparse does, but
    keeps indented lines (command examples) exactly as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if not line.strip() or line.startswith(" "):
                lines.append(indent + line if line.strip() else "")
            else:
                lines.append(textwrap.fill(line, width, initial_indent=indent,
                                           subsequent_indent=indent))
        return "\n".join(lines)


def add_global_arguments(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """The options every command takes, before or after the command's name:
    ``--config PATH``, ``--strict``, ``--quiet``. On the top parser they carry the
    defaults; on a command's parser they are left unset unless given, so that
    ``cowork-llm --config x.toml ask ...`` and ``cowork-llm ask --config x.toml ...`` agree."""
    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--config", metavar="PATH", default=default(None),
                        help="config file to read (default: $COWORK_CONFIG, else ./config.toml)")
    parser.add_argument("--strict", action="store_true", default=default(False),
                        help="unknown config keys and COWORK_LLM_* variables are errors, not "
                             "warnings (also COWORK_LLM_STRICT=1)")
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no progress lines on stderr (retries, waits for the rate limit)")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Give a subcommand the global options (see :func:`add_global_arguments`)."""
    add_global_arguments(parser)


def client_observers(args: argparse.Namespace, command: str) -> Tuple[Observer, ...]:
    """The observers a command's client reports to: the library's defaults
    (OpenTelemetry when installed) and, unless ``--quiet``, a line on stderr for each
    retry and each long wait for the rate limit."""
    observers: Tuple[Observer, ...] = default_observers()
    if not getattr(args, "quiet", False):
        from ._progress_lines import ProgressLines

        observers += (ProgressLines(prefix=f"cowork-llm {command}"),)
    return observers


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"cowork-llm: {type(error).__name__}: {text}"


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func(args)`` and return its exit status; never lets an expected error escape."""
    # The CLI shows the library's warnings (unknown keys, unsafe permissions) on stderr,
    # in its own format; an invalid COWORK_LOG_LEVEL is one plain line, not a Python warning.
    command = getattr(args, "command", None) or "cowork-llm"
    configure_logging_from_env(report=lambda message: print(f"cowork-llm: {message}", file=sys.stderr))
    install_stderr_handler()
    restore_format = use_cli_format(f"cowork-llm {command}")
    debug = os.environ.get(LOG_LEVEL_VARIABLE, "").strip().lower() == "debug"
    strict = STRICT.set(True) if getattr(args, "strict", False) else None
    try:
        status = args.func(args)
        sys.stdout.flush()
        return EXIT_OK if status is None else int(status)
    except KeyboardInterrupt:
        print("cowork-llm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`cowork-llm init --template | head`): nothing left to say.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (tests, embedding)
            pass
        return _EXIT_BROKEN_PIPE
    except LlmError as error:
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(_one_line(error), file=sys.stderr)
        return EXIT_CONFIG if isinstance(error, ConfigError) else EXIT_ERROR
    finally:
        restore_format()  # main() may run again in this process (tests, embedding)
        if strict is not None:
            STRICT.reset(strict)
