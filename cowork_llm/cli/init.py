"""``cowork-llm init``: show the resolved configuration, or print a commented template.

``cowork-llm init [--config PATH]`` prints every field with its value (the key masked) and
where it came from; exit 0 when the configuration is valid, 2 otherwise.
``cowork-llm init --template > config.toml`` writes a starting point with every key.
"""

import argparse
import json
import textwrap
from typing import Any, List

from ..config._checks import masked_repr
from ..config._loader import CONFIG_KEYS, CONFIG_PATH_VARIABLE, ConfigKey, load_config
from ..config._sections import LlmConfig
from ..providers import check_model_settings
from ._common import HelpFormatter, add_config_argument

__all__ = ["add_parser", "render_template", "describe_config", "check_client_settings", "KEY_MEANINGS"]

# What each key means: the template's comments. docs/configuration.md says the same.
KEY_MEANINGS = {
    "model.base_url": "Base URL of the API, up to and without /chat/completions (or /messages).",
    "model.api_key": "The API key. A list [\"k1\", \"k2\"] (or \"k1,k2\" in the variable) is a "
                     "rotation tried in turn on 429/401; \"keyring:SERVICE/USER\" reads the keyring.",
    "model.model_name": "The model to ask, e.g. gpt-4o-mini or claude-sonnet-4-5.",
    "model.temperature": "Sampling temperature, 0 to 2; unset means the provider's default.",
    "model.max_tokens": "Most tokens one answer may have; unset means the provider's default.",
    "model.provider": "Wire protocol: openai (also any OpenAI-compatible server) or anthropic.",
    "model.timeout_seconds": "Longest one attempt may take, connect, headers and body together "
                             "(the connect timeout is at most 10 s).",
    "model.allow_insecure_http": "Allow a plain http:// base_url to a host that is not loopback "
                                 "(the key would travel unencrypted).",
    "model.api_key_command": "A command whose output is the key, run once (no shell, 10 s limit).",
    "model.ca_bundle": "A CA bundle file for a private certificate authority (verification stays on).",
    "model.top_p": "Nucleus sampling, 0 to 1; unset means the provider's default (not for anthropic).",
    "model.stop": "Stop sequences, a string or a list of up to 4 (a JSON list in the variable); "
                  "unset means none.",
    "model.seed": "Seed for repeatable sampling where the server supports it (not for anthropic).",
    "model.reasoning_effort": "For reasoning models: none, minimal, low, medium, high, xhigh or max "
                              "(anthropic: a thinking budget).",
    "model.max_tokens_field": "How max_tokens goes out to an OpenAI-compatible server: auto "
                              "(max_completion_tokens for OpenAI and Azure hosts, max_tokens elsewhere), "
                              "max_completion_tokens or max_tokens.",
    "model.stream_idle_timeout_seconds": "A stream that sends no content for this long fails with "
                                         "ApiTimeoutError (keep-alive comments do not count).",
    "model.stream_timeout_seconds": "Longest a stream may stay open, however steadily it sends.",
    "model.max_response_bytes": "Most bytes one answer may have, counted after decompression; "
                                "more is an InvalidResponseError and the connection is dropped.",
    "rate_limit.min_interval_seconds": "Least time between the starts of two requests.",
    "rate_limit.max_concurrent": "Most requests in flight at once.",
    "rate_limit.max_concurrent_scope": "process (max_concurrent per process) or shared (across "
                                       "every process of a sqlite/redis backend).",
    "rate_limit.requests_per_minute": "Most requests started in any 60 s; unset means no such limit.",
    "rate_limit.tokens_per_minute": "Most tokens used in any 60 s; unset means no such limit.",
    "rate_limit.acquire_timeout_seconds": "Longest wait for a limiter slot before "
                                          "LimiterAcquireError; unset means wait as long as it takes.",
    "rate_limit.backend": "Where the limiter keeps its state: memory (one process), "
                          "sqlite (processes on one host) or redis (several hosts).",
    "rate_limit.path": "The SQLite file, for backend = \"sqlite\".",
    "rate_limit.redis_url": "The Redis URL, for backend = \"redis\".",
    "rate_limit.key": "Name of the shared limit: clients with the same key share one budget.",
    "rate_limit.adaptive": "Learn the provider's limits from its rate-limit headers and stay "
                           "inside them (never above the limits set here).",
    "rate_limit.pace": "With learned limits: bucket (start whenever the provider's bucket has "
                       "room) or even (spread starts over the window).",
    "retry.max_attempts": "Most attempts per call, the first one included.",
    "retry.initial_wait_seconds": "Wait before the first retry; it doubles (with jitter) after that.",
    "retry.max_wait_seconds": "Longest wait between two attempts.",
    "retry.max_retry_after_seconds": "Longest Retry-After we honour; a longer one fails at once.",
    "retry.total_timeout_seconds": "Time budget of one call: its attempts and the waits between them.",
    "retry.on_invalid_json": "Retry a response_format answer that is not JSON or does not match "
                             "its schema (within max_attempts).",
    "cache.backend": "Response cache: none (off), memory or sqlite.",
    "cache.path": "The SQLite file, for backend = \"sqlite\".",
    "cache.ttl_seconds": "How long a cached answer stays valid.",
    "cache.max_entries": "Most answers kept; the oldest go first.",
    "embeddings.model_name": "The embeddings model for embed(), e.g. text-embedding-3-small; "
                             "unset means embed() raises ConfigError.",
    "embeddings.base_url": "Base URL of an OpenAI-compatible server with /embeddings; "
                           "unset means [llm.model]'s.",
    "embeddings.api_key": "The key for base_url; unset means [llm.model]'s.",
    "embeddings.provider": "openai (Anthropic has no embeddings endpoint); unset means "
                           "[llm.model]'s.",
    "embeddings.batch_size": "Most texts per request; a longer input is split, each request "
                             "with its own limiter slot.",
}

# Values written (uncommented) into the template for the required keys.
_TEMPLATE_EXAMPLES = {"model.base_url": "https://api.openai.com/v1", "model.model_name": "gpt-4o-mini"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init",
        help="show the resolved configuration, or print a config.toml template",
        description="Show every configuration field with its value (the API key masked) and "
                    "where it came from: the config file, a COWORK_LLM_* variable or the "
                    "default. Exit 0 when the configuration is valid, 2 when it is not "
                    "(one line on stderr naming the key or variable).",
        epilog="examples:\n  cowork-llm init\n  cowork-llm init --config /etc/llm.toml\n"
               "  cowork-llm init --template > config.toml",
        formatter_class=HelpFormatter,
    )
    add_config_argument(parser)
    parser.add_argument("--template", action="store_true",
                        help="print a commented config.toml with every key and its default")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.template:
        print(render_template(), end="")
        return 0
    config = load_config(args.config)
    check_client_settings(config)
    print(describe_config(config))
    return 0


def check_client_settings(config: LlmConfig) -> None:
    """What building the client checks beyond the configuration itself (the providers'
    own :func:`~cowork_llm.providers.check_model_settings`, for the primary and every
    fallback), so that ``init`` does not call valid a setup every other command refuses.

    Raises ConfigError: a base_url ending in /chat/completions or /messages, plain http://
    to a host that is not loopback without ``allow_insecure_http``, or a ``ca_bundle``
    that does not exist.
    """
    check_model_settings(config.model, "llm.model")
    for index, model in enumerate(config.fallback):
        check_model_settings(model, f"llm.fallback[{index}]")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def _key_lines(key: ConfigKey) -> List[str]:
    meaning = KEY_MEANINGS[key.path]
    if key.required:
        status = "required" + (" (unless api_key_command is set)" if key.name == "api_key" else "")
    elif key.default is None or key.default == ():
        status = "default: not set"
    else:
        status = f"default: {_toml_value(key.default)}"
    lines = [f"# {line}" for line in textwrap.wrap(meaning, 86)]
    lines.append(f"# {status}; variable {key.variable}")
    if key.path in _TEMPLATE_EXAMPLES:
        lines.append(f"{key.name} = {_toml_value(_TEMPLATE_EXAMPLES[key.path])}")
    elif key.path == "model.api_key":
        lines.append('# api_key = "sk-..."')
    elif key.default is None or key.default == ():
        lines.append(f"# {key.name} =")
    else:
        lines.append(f"# {key.name} = {_toml_value(key.default)}")
    return lines


def render_template() -> str:
    """A commented config.toml: every key with its default, variable and meaning."""
    lines = [
        "# cowork-llm configuration (written by `cowork-llm init --template`).",
        "# A key left out or commented out here comes from its COWORK_LLM_* variable,",
        "# else from its default; a key set here wins over its variable.",
        f"# Read from ./config.toml, or the file named by --config or {CONFIG_PATH_VARIABLE}.",
        "# If you put an API key in this file, keep it private (chmod 600) and out of git;",
        "# or leave api_key out and set COWORK_LLM_API_KEY instead.",
    ]
    section = None
    for key in CONFIG_KEYS:
        if key.section != section:
            section = key.section
            lines += ["", f"[llm.{section}]"]
        lines += _key_lines(key)
    lines += [
        "",
        "# Prices per million tokens, for the usage report (file only, no variables).",
        '# [llm.pricing."gpt-4o-mini"]',
        "# input_per_million = 0.15",
        "# output_per_million = 0.6",
        "# cached_input_per_million = 0.075   # prompt tokens read from the provider's cache",
        "",
        "# Models tried in turn when the primary finally fails (file only, no variables).",
        "# Each entry is a full model section with the keys of [llm.model].",
        "# [[llm.fallback]]",
        '# base_url = "https://api.anthropic.com/v1"',
        '# provider = "anthropic"',
        '# model_name = "claude-sonnet-4-5"',
        '# api_key = "sk-ant-..."',
    ]
    return "\n".join(lines) + "\n"



def describe_config(config: LlmConfig) -> str:
    """Every field, its value (keys masked) and its source, one per line."""
    rows = []
    for key in CONFIG_KEYS:
        value = getattr(getattr(config, key.section), key.name)
        rows.append((key.path, masked_repr(key.name, value), config.sources.get(key.path, "default")))
        if key.path == "model.api_key" and config.model.extra_api_keys:
            rows.append(("model.extra_api_keys", masked_repr("extra_api_keys", config.model.extra_api_keys),
                         config.sources.get("model.api_key", "default")))
    for model_name, price in config.pricing.items():
        rows.append((f'pricing."{model_name}"',
                     f"input {price.input_per_million}, output {price.output_per_million} per million",
                     config.sources.get("pricing", "")))
    for index, model in enumerate(config.fallback):
        rows.append((f"fallback[{index}]", repr(model), config.sources.get("fallback", "")))
    width = max(len(path) for path, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 40)
    lines = [f"{path:<{width}}  {value:<{value_width}}  {source}" for path, value, source in rows]
    lines.append("configuration is valid")
    return "\n".join(lines)
