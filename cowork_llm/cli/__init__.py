"""The ``cowork-llm`` command line: a thin layer over the library.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which sets
``func`` on its parser) and is listed in ``_COMMANDS``. Expected failures print one line
on stderr and exit non-zero (2 configuration, 1 API or network); a traceback appears only
with ``COWORK_LOG_LEVEL=debug``.
"""

import argparse
import importlib
import sys
from typing import List, Optional

from .._version import __version__
from ._common import add_global_arguments, run_command

# Subcommands, in the order `--help` lists them; each in the module of its name ("-" → "_").
_COMMANDS = ("init", "ask", "embed", "health", "batch", "fake-server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cowork-llm",
        description="Thread-safe, rate-limited LLM client: configure, ask, embed, check, batch.",
    )
    parser.add_argument("--version", action="version", version=f"cowork-llm {__version__}")
    add_global_arguments(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
