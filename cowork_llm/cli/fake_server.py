"""``cowork-llm fake-server [--port N] [--quota SPEC]``: try the CLI without a key.

Runs :class:`~cowork_llm.testing.FakeLlmServer` in the foreground and prints the
``export`` lines that point the CLI (or any program using this library) at it; Ctrl-C
stops it. ``--quota rpm=60,tpm=40000`` makes it enforce a provider-style quota (429s with
rate-limit headers), so the limiter's learned limits show in ``cowork-llm health``.
"""

import argparse
import shlex
import sys
import threading
from typing import Any, Dict, Optional

from ..testing import FakeLlmServer, Quota
from ..testing.fake_quota import HEADER_FAMILIES
from ._common import EXIT_OK, HelpFormatter, add_config_argument

__all__ = ["add_parser", "run", "parse_quota"]

FAKE_KEY = "fake-key"
# --quota's short names → Quota's fields
_QUOTA_NAMES = {"rpm": "requests_per_minute", "tpm": "tokens_per_minute",
                "itpm": "input_tokens_per_minute", "otpm": "output_tokens_per_minute"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fake-server",
        help="run a local fake LLM server to try the CLI without a key",
        description="Run the built-in fake OpenAI/Anthropic-compatible server on 127.0.0.1 "
                    "until Ctrl-C, and print the export lines that point cowork-llm at it. "
                    "It answers \"echo: <your prompt>\", streams, lists models, and counts "
                    "tokens at four characters each.",
        epilog="example (two shells):\n  cowork-llm fake-server --port 8400\n"
               "  export COWORK_LLM_BASE_URL=http://127.0.0.1:8400/v1 ...\n"
               '  cowork-llm ask "Name a colour"',
        formatter_class=HelpFormatter,
    )
    add_config_argument(parser)  # the global options are accepted here too
    parser.add_argument("--port", type=_port, default=0, metavar="N",
                        help="port to listen on (default: a free one)")
    parser.add_argument("--quota", type=parse_quota, default=None, metavar="SPEC",
                        help="enforce a per-minute quota, e.g. rpm=60,tpm=40000 "
                             "(also itpm, otpm: input/output tokens; headers=anthropic for "
                             "Anthropic's rate-limit headers instead of OpenAI's)")
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return value


def parse_quota(text: str) -> Dict[str, Any]:
    """``rpm=60,tpm=40000`` → ``{"requests_per_minute": 60, "tokens_per_minute": 40000}``;
    ``headers=anthropic`` (or ``openai``, ``auto``) picks the rate-limit header family.

    Raises argparse.ArgumentTypeError naming the part that is wrong."""
    limits: Dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name.strip().lower() == "headers":
            if value.strip() not in HEADER_FAMILIES:
                raise argparse.ArgumentTypeError(
                    f"headers must be one of {', '.join(HEADER_FAMILIES)}, got {value.strip()!r}")
            limits["headers"] = value.strip()
            continue
        field = _QUOTA_NAMES.get(name.strip().lower())
        if field is None:
            raise argparse.ArgumentTypeError(
                f"unknown limit {name.strip()!r} in {text!r}: use {', '.join(_QUOTA_NAMES)} "
                "or headers (e.g. rpm=60)")
        try:
            limits[field] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name.strip()} must be a whole number, got {value!r}") from None
        if limits[field] < 1:
            raise argparse.ArgumentTypeError(f"{name.strip()} must be at least 1, got {value!r}")
    if not set(limits) - {"headers"}:
        raise argparse.ArgumentTypeError("give at least one limit, e.g. rpm=60")
    return limits


def _server(port: int, quota: Optional[Dict[str, int]]) -> FakeLlmServer:
    """The server, enforcing ``quota`` (Quota's field names) when given."""
    limits: Dict[str, Any] = dict(quota or {})
    return FakeLlmServer(api_key=FAKE_KEY, port=port, quota=Quota(**limits) if limits else None)


def run(args: argparse.Namespace) -> int:
    args.quota_text = ", ".join(f"{k}={v}" for k, v in (args.quota or {}).items())
    try:
        server = _server(args.port, args.quota).start()
    except OSError as error:  # the port is taken, or not ours to bind
        print(f"cowork-llm fake-server: cannot listen on 127.0.0.1:{args.port}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 2
    try:
        exports = {"COWORK_LLM_BASE_URL": server.base_url, "COWORK_LLM_API_KEY": FAKE_KEY,
                   "COWORK_LLM_MODEL_NAME": "fake-model"}
        quota = f", quota {args.quota_text}" if args.quota else ""
        print(f"fake LLM server on {server.base_url}{quota} (Ctrl-C stops it). In another shell:")
        for name, value in exports.items():
            print(f"export {name}={shlex.quote(value)}")
        print('then: cowork-llm ask "Name a colour"; cowork-llm health; cowork-llm init')
        sys.stdout.flush()
        stop = threading.Event()
        while not stop.wait(0.5):  # short waits: Ctrl-C is handled between them
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print(f"fake LLM server stopped after {server.request_count} request(s)", file=sys.stderr)
    return EXIT_OK
