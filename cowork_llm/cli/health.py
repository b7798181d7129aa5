"""``cowork-llm health [--config PATH] [--timeout SECONDS]``: is the provider reachable,
and does it take our key?

One ``GET {base_url}/models`` (no completion quota), one line on stdout: exit 0 when
healthy, 1 when not (the line says why: DNS, refused, TLS, timeout, 401, 404, 5xx), 2 on a
configuration error. Then what the rate limiter knows (:meth:`RateLimiter.limits`): the
configured limits and those learned from the provider's rate-limit headers (with a
``sqlite`` or ``redis`` backend, what any process of the group learned). The key is
the one requests would send: ``api_key_command`` is run and ``keyring:`` references are
read first. The key is never printed.
"""

import argparse
from typing import Any, List

from ..config import LlmConfig, load_config
from ..errors import LlmError
from ..health import HealthStatus, check_health
from ..secrets import resolve_api_keys
from ._common import EXIT_ERROR, EXIT_OK, HelpFormatter, add_config_argument

__all__ = ["add_parser", "run", "describe_status"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health",
        help="check that the provider answers and accepts the key (uses no quota)",
        description="Ask the provider for its model list (GET {base_url}/models, which uses "
                    "no completion quota) with the configured key, and print one line: "
                    "healthy, or unhealthy and why (DNS, connection refused, TLS, timeout, "
                    "401, 404, 5xx); then the rate limits, configured and learned from the "
                    "provider's headers. Exit 0 when healthy, 1 when not, 2 for a "
                    "configuration error. The key is never printed.",
        formatter_class=HelpFormatter,
    )
    add_config_argument(parser)
    parser.add_argument("--timeout", type=_positive_seconds, default=5.0, metavar="SECONDS",
                        help="give up after this long (default: 5)")
    parser.set_defaults(func=run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds greater than 0, got {text!r}")
    return value


def describe_status(provider: str, model_name: str, status: HealthStatus) -> str:
    """The one line: ``healthy: openai gpt-4o at api.openai.com: ok (HTTP 200), 85 ms``."""
    verdict = "healthy" if status.ok else "unhealthy"
    return f"{verdict}: {provider} {model_name} at {status.detail}, {status.latency_ms:.0f} ms"


def run(args: argparse.Namespace) -> int:
    """Raises ConfigError (exit 2 through run_command) for a bad configuration or a key
    source (api_key_command, keyring) that fails."""
    config = load_config(args.config)
    model = resolve_api_keys(config.model)
    status = check_health(model, timeout=args.timeout)
    print(describe_status(model.provider, model.model_name, status))
    for line in limits_lines(config):
        print(line)
    return EXIT_OK if status.ok else EXIT_ERROR


def limits_lines(config: LlmConfig) -> List[str]:
    """What the limiter of ``config.rate_limit`` knows, as lines; one line saying why
    when its store cannot be read. Never raises an LlmError."""
    from ..rate_limiter import init_global_rate_limiter

    try:
        return list(init_global_rate_limiter(config.rate_limit).limits().lines())
    except LlmError as error:
        return [f"rate limit {config.rate_limit.key!r}: cannot read what the limiter knows: {error}"]
