"""``cowork-llm embed TEXT... [--dimensions N] [--usage] [--config PATH]``: print the
embedding of each text as one JSON line, in input order::

    {"index": 0, "model": "text-embedding-3-small", "embedding": [0.0123, ...]}

A TEXT of ``-`` reads texts from stdin, one per non-blank line. The texts go through the
same rate-limited, retrying client as the library (``[llm.embeddings]``, in batches of
``batch_size``). Exit 0; 2 for a configuration error (no embeddings model, Anthropic) or
no text; 1 for an API or network error, each as one line on stderr. ``--usage`` adds the
usage lines on stderr, so stdout stays JSON lines.
"""

import argparse
import json
import sys
from typing import Any, List

from ..client import create_llm_client
from ..config import load_config
from ._common import EXIT_CONFIG, EXIT_OK, HelpFormatter, add_config_argument, client_observers
from .ask import _library_logs_quiet, _show_usage

__all__ = ["add_parser", "run"]

STDIN_TEXTS = "-"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="print the embedding of each text as a JSON line",
        description="Embed each TEXT with the [llm.embeddings] model (through the rate "
                    "limiter and retries) and print one JSON line per text, in order.",
        epilog='examples:\n  cowork-llm embed "first text" "second text"\n'
               "  cut -f2 notes.tsv | cowork-llm embed - > vectors.jsonl",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("texts", metavar="TEXT", nargs="+",
                        help='a text to embed; "-" reads texts from stdin, one per line')
    parser.add_argument("--dimensions", metavar="N", type=int, default=None,
                        help="ask the model for vectors of N numbers (text-embedding-3 and later)")
    parser.add_argument("--usage", action="store_true",
                        help="after the vectors, print the token usage and cost on stderr")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def _texts(arguments: List[str]) -> List[str]:
    texts: List[str] = []
    for argument in arguments:
        if argument == STDIN_TEXTS:
            texts += [line for line in sys.stdin.read().splitlines() if line.strip()]
        else:
            texts.append(argument)
    return texts


def run(args: argparse.Namespace) -> int:
    """Raises ConfigError (exit 2) and LlmApiError (exit 1) through run_command."""
    config = load_config(args.config)
    texts = _texts(args.texts)
    problem = None
    if not texts:
        problem = "no text to embed (stdin held only blank lines)"
    elif args.dimensions is not None and args.dimensions < 1:
        problem = f"--dimensions must be at least 1, got {args.dimensions}"
    else:
        blank = next((i for i, text in enumerate(texts) if not text.strip()), None)
        if blank is not None:
            problem = f"text {blank + 1} is empty; embedding servers reject empty input"
    if problem:
        print(f"cowork-llm embed: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    with create_llm_client(config, observers=client_observers(args, "embed")) as llm, _library_logs_quiet():
        result = llm.embed(texts, dimensions=args.dimensions)
    for index, vector in enumerate(result.vectors):
        sys.stdout.write(json.dumps({"index": index, "model": result.model, "embedding": vector}) + "\n")
    if args.usage:
        _show_usage(llm)
    return EXIT_OK
