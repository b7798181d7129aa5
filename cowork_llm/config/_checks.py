"""Checks and masking for single configuration values.

Plain functions: each takes the section name (``llm.model``) and the value(s) to check,
and raises :class:`~cowork_llm.errors.ConfigError` (or a subclass) naming the key. The
dataclasses in :mod:`cowork_llm.config` call them from ``__post_init__``; the masking
helpers are re-exported there as public API.
"""

import dataclasses
import functools
import math
import typing
from typing import Any, Dict, Optional, Sequence
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from ..errors import ConfigError, InvalidBaseUrlError, MissingApiKeyError

__all__ = ["mask_secret", "mask_url_password", "url_secrets", "masked_repr", "type_hints", "check_type",
           "MAX_SECONDS",
           "check_at_most_a_year", "check_base_url", "check_api_keys"]

_SECRET_FIELDS = frozenset({"api_key", "extra_api_keys"})


def mask_secret(secret: Optional[str]) -> str:
    """Show enough of a key to tell two apart, never enough to use it."""
    if not secret:
        return "''"
    if len(secret) < 12:
        return "'…'"
    return f"'{secret[:3]}…{secret[-4:]}'"


def mask_url_password(url: str) -> str:
    """``url`` with every credential redis-py would read from it replaced by ``***``:
    the password (``user:PW@``), a lone user-info (``redis://PW@host``: often a
    password written without its colon) and query parameters naming a password
    (``?password=PW``, ``?ssl_password=PW``). Safe for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable: show nothing that could be a credential
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = (f"{user}:***" if colon else "***") + "@" + hostport
    query = "&".join(_mask_query_item(item) for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_query_item(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}=***" if equals and "pass" in name.lower() else item


def url_secrets(url: str) -> "list[str]":
    """The credential strings inside ``url`` (as written and percent-decoded), longest
    first: what must be scrubbed from a message that might quote them."""
    found = set()
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        found.add(password if colon else user)
    for item in parts.query.split("&"):
        name, equals, value = item.partition("=")
        if equals and "pass" in name.lower():
            found.add(value)
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def masked_repr(name: str, value: Any) -> str:
    """``repr(value)`` of the field ``name``, with keys and URL passwords masked."""
    if name == "api_key":
        return mask_secret(value)
    if name == "extra_api_keys":
        return "(" + ", ".join(mask_secret(k) for k in value) + ")"
    if name == "redis_url" and value:
        return repr(mask_url_password(value))
    return repr(value)


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@functools.cache
def type_hints(cls: type) -> Dict[str, Any]:
    """typing.get_type_hints, once per class (it re-evaluates every annotation; the
    classes never change)."""
    return typing.get_type_hints(cls)


def check_type(section: str, name: str, value: Any, expected: Any) -> None:
    """Raise ConfigError unless ``value`` fits the annotation ``expected``.

    A secret field's value is never shown in the message.
    """
    path = f"{section}.{name}"
    origin = typing.get_origin(expected)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return
        expected = next(a for a in typing.get_args(expected) if a is not type(None))
        origin = typing.get_origin(expected)
    if origin in (tuple, dict) or dataclasses.is_dataclass(expected):
        return  # nested values are checked by their own classes / the loader
    ok = isinstance(value, expected)
    if expected is float:  # an int is a fine number; a bool is not
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        shown = "(hidden)" if name in _SECRET_FIELDS else repr(value)
        raise ConfigError(f"{path} must be {_TYPE_WORDS.get(expected, expected)}, got {shown}", key=path)
    if expected is float and not math.isfinite(value):  # TOML allows nan and inf
        raise ConfigError(f"{path} must be a finite number, got {value!r}", key=path)


# Waits and timeouts are capped: beyond ~292 years sleep() and socket timeouts raise
# OverflowError mid-call; a year is more than anyone means.
MAX_SECONDS = 365 * 24 * 3600.0


def check_at_most_a_year(section: str, **seconds: Optional[float]) -> None:
    """Raise ConfigError for the first wait or timeout (keyword = field name) longer
    than a year; None means "no limit" and passes."""
    for name, value in seconds.items():
        if value is not None and value > MAX_SECONDS:
            raise ConfigError(
                f"{section}.{name} must be at most {MAX_SECONDS:.0f} (a year), got {value!r}",
                key=f"{section}.{name}")


def _url_error(section: str, message: str) -> InvalidBaseUrlError:
    return InvalidBaseUrlError(message, key=f"{section}.base_url")


def check_base_url(section: str, url: str) -> SplitResult:
    """The parsed ``url``. Raises InvalidBaseUrlError unless it is an http(s) URL
    with a host (and a valid port), without credentials or spaces."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"; not shown: it may hold user:key@
        raise _url_error(section, f"{section}.base_url is not a URL ({exc}): check its "
                                  "brackets, e.g. 'http://[::1]:8080/v1'") from None
    if "@" in parts.netloc or parts.query or parts.fragment:
        # Checked first, and the URL is not shown: what follows "@" or "?" is often a key.
        raise _url_error(section,
            f"{section}.base_url must not contain user:password@, a ?query or a #fragment "
            f"(base_url appears in logs and errors; put the key in api_key), got "
            f"'{parts.scheme}://{parts.hostname or ''}{parts.path}' with them removed"
        )
    if not parts.scheme and "." in url.split("/")[0]:
        raise _url_error(section,
            f"{section}.base_url {url!r} has no scheme: write 'https://{url}'"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _url_error(section,
            f"{section}.base_url must be an http(s) URL with a host, "
            f"e.g. 'https://api.openai.com/v1', got {url!r}"
        )
    if any(c.isspace() for c in url):
        raise _url_error(section, f"{section}.base_url must not contain spaces, got {url!r}")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise _url_error(section,
            f"{section}.base_url has an invalid port (a number from 1 to 65535), got {url!r}")
    return parts


def check_api_keys(section: str, keys: Sequence[str], has_command: bool) -> None:
    """Raise MissingApiKeyError for an empty key, or one holding a space or a character
    that is not printable ASCII. An empty key passes when ``has_command`` (api_key_command
    will supply it). The message never shows the key."""
    for key in keys:
        if not key and has_command:
            continue
        if not key or any(c.isspace() for c in key):
            raise MissingApiKeyError(
                f"{section}.api_key must be a non-empty key without spaces "
                "(set COWORK_LLM_API_KEY or model.api_key in config.toml)"
            )
        odd = next((i for i, c in enumerate(key) if not "!" <= c <= "~"), None)
        if odd is not None:
            # Keys are printable ASCII; anything else (a zero-width space copied from a
            # web page) cannot go into an HTTP header. The character is shown, the key not.
            raise MissingApiKeyError(
                f"{section}.api_key holds a character that is not printable ASCII "
                f"(U+{ord(key[odd]):04X}, character {odd + 1}): probably copied along with "
                "the key; type or copy the key again"
            )
