"""``cowork-llm ask "PROMPT" [--system TEXT] [--config PATH]``: print the answer to one prompt.

A PROMPT of ``-`` is read from stdin (``git diff | cowork-llm ask --system "Review this" -``).
The call goes through the same rate-limited, retrying client as the library. Exit 0 with
the answer on stdout; 2 for a configuration error or an empty prompt, 1 for an API or
network error, each as one line on stderr (a traceback only with COWORK_LOG_LEVEL=debug).
``--usage`` adds one line of totals (requests, tokens, limiter wait, cost) on stderr after
the answer, so stdout stays the answer alone and can be piped. ``--stream`` prints the
answer as it arrives (a failure mid-answer leaves the text so far, then exits 1).

``--model``, ``--temperature`` and ``--max-tokens`` override the configuration for this
call; ``--json`` / ``--schema FILE`` ask for structured output and print the parsed JSON;
``--image PATH_OR_URL`` (repeatable) adds images to the prompt (:mod:`._ask_options`).
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

from .._logging import LOG_LEVEL_VARIABLE, PACKAGE_LOGGER
from ..client import create_llm_client
from ..config import load_config
from ..errors import LlmError
from ..llm import Llm, build_messages
from ..results import ChatResult
from ..usage import format_usage
from ._ask_options import AskOptionError, add_request_arguments, chat_options, user_content
from ._common import EXIT_CONFIG, EXIT_OK, HelpFormatter, add_config_argument, client_observers

__all__ = ["add_parser", "run", "read_prompt"]

STDIN_PROMPT = "-"
EXIT_USAGE = EXIT_CONFIG  # 2, as argparse exits for a bad command line


class PromptError(ValueError):
    """The prompt (or system prompt) cannot be sent; the message says why."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="send one prompt and print the answer",
        description="Send one prompt to the configured LLM (through the rate limiter and "
                    "retries) and print the answer.",
        epilog='examples:\n  cowork-llm ask "Name three rivers"\n'
               '  git diff | cowork-llm ask --system "Review this diff briefly" -\n'
               '  cowork-llm ask --schema city.schema.json "Describe Oslo"\n'
               '  cowork-llm ask --image chart.png "What does this chart show?"',
        formatter_class=HelpFormatter,
    )
    parser.add_argument("prompt", metavar="PROMPT", help='the prompt; "-" reads it from stdin')
    parser.add_argument("--system", metavar="TEXT", default=None,
                        help="a system prompt sent before PROMPT")
    parser.add_argument("--usage", action="store_true",
                        help="after the answer, print the token usage and cost on stderr")
    parser.add_argument("--stream", action="store_true",
                        help="print the answer piece by piece as it arrives")
    add_request_arguments(parser)
    add_config_argument(parser)
    parser.set_defaults(func=run)


def read_prompt(argument: str) -> str:
    """The prompt text: ``argument`` itself, or all of stdin when it is ``-``.

    Raises PromptError when stdin is not valid text.
    """
    if argument != STDIN_PROMPT:
        return argument
    if sys.stdin is None:
        raise PromptError('PROMPT is "-" but there is no stdin to read it from')
    if sys.stdin.isatty():
        print("cowork-llm ask: reading the prompt from stdin; end it with Ctrl-D",
              file=sys.stderr)
    try:
        return sys.stdin.read().rstrip("\n")
    except UnicodeDecodeError as error:
        raise PromptError(f"stdin is not valid {error.encoding} text ({error.reason} at "
                          f"byte {error.start})") from None


def _messages(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Raises PromptError for an empty prompt or system prompt, AskOptionError for an
    unusable --image."""
    prompt = read_prompt(args.prompt)
    if not prompt.strip():
        source = "stdin" if args.prompt == STDIN_PROMPT else "PROMPT"
        raise PromptError(f"the prompt is empty (from {source}); give the text to send")
    if args.system is not None and not args.system.strip():
        raise PromptError("--system is empty; give a system prompt or leave the option out")
    messages: List[Dict[str, Any]] = build_messages(prompt, args.system)
    content = user_content(prompt, args.image)
    if content is not None:
        messages[-1]["content"] = content
    return messages


def _show(result: ChatResult, structured: bool) -> None:
    """Print the answer: its text, or with --json/--schema the parsed JSON."""
    if structured:
        print(json.dumps(result.parsed, indent=2, ensure_ascii=False))
    else:
        print(result.content)


def _print_stream(llm: Llm, messages: List[Dict[str, Any]], options: Dict[str, Any]) -> None:
    """Print the answer's pieces as they arrive (flushed one by one), then a newline.

    Raises the stream's LlmApiError when it fails mid-answer; the text printed so far
    stays, ended by a newline so the error line on stderr starts on a line of its own.
    """
    stream = llm.stream(messages, **options)
    try:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        sys.stdout.write("\n")
        sys.stdout.flush()
        stream.close()  # gives the limiter slot back on Ctrl-C too


def _show_usage(llm: Llm) -> None:
    """The usage line on stderr (stdout holds only the answer)."""
    try:
        line = format_usage(llm.usage())
    except NotImplementedError:
        line = "usage: not tracked by this client"
    print(line, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Raises ConfigError (exit 2) and LlmApiError (exit 1) through run_command."""
    config = load_config(args.config)  # first: nobody types a prompt for a broken setup
    try:
        if args.stream and (args.json or args.schema):
            raise AskOptionError("--stream prints text as it arrives; --json and --schema print "
                                 "the parsed answer at the end: use one or the other")
        options = chat_options(args)
        messages = _messages(args)
        if args.model is not None:
            if not args.model.strip():
                raise AskOptionError("--model is empty; give a model name or leave the option out")
            model = dataclasses.replace(config.model, model_name=args.model)
            config = dataclasses.replace(config, model=model)
        llm = create_llm_client(config, observers=client_observers(args, "ask"))
    except (PromptError, AskOptionError) as error:
        print(f"cowork-llm ask: {error}", file=sys.stderr)
        return EXIT_USAGE
    with llm, _library_logs_quiet():
        try:
            if args.stream:
                _print_stream(llm, messages, options)
            else:
                _show(llm.chat(messages, **options), structured="response_format" in options)
        except ValueError as error:  # an option out of range, or one the provider lacks
            if isinstance(error, LlmError):
                raise
            print(f"cowork-llm ask: {error}", file=sys.stderr)
            return EXIT_USAGE
    if args.usage:
        _show_usage(llm)
    return EXIT_OK


@contextmanager
def _library_logs_quiet() -> Iterator[None]:
    """During the call, hide the library's own log lines (a failed call is logged as an
    ERROR, a rejected key as a WARNING) unless COWORK_LOG_LEVEL asks for them: the
    command reports a failure as its one line on stderr already."""
    if os.environ.get(LOG_LEVEL_VARIABLE, "").strip():
        yield
        return
    package_logger = logging.getLogger(PACKAGE_LOGGER)
    level = package_logger.level
    package_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        package_logger.setLevel(level)
