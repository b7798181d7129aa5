"""Where API keys come from when they are not written in the config: a command
(``api_key_command``) or the system keyring (``api_key = "keyring:SERVICE/USERNAME"``).

:func:`resolve_api_keys` runs once, when the client is created
(:func:`~cowork_llm.providers.build_provider` calls it); the key is never logged, and a
command's output never appears in an error message.
"""

import logging
import shlex
import subprocess
from dataclasses import replace
from typing import List, Optional

from .config._sections import ModelConfig
from .errors import MissingApiKeyError

__all__ = ["resolve_api_keys", "run_key_command", "read_keyring", "KEY_COMMAND_TIMEOUT_SECONDS"]

logger = logging.getLogger(__name__)

KEY_COMMAND_TIMEOUT_SECONDS = 10.0
# Real keys (JWTs included) are far shorter; more is a command printing something else,
# which would only fail later as an oversized HTTP header.
MAX_KEY_CHARS = 8192
KEYRING_PREFIX = "keyring:"


def resolve_api_keys(model: ModelConfig, *, section: str = "llm.model") -> ModelConfig:
    """``model`` with real keys: ``api_key_command``'s output as the first key (when
    set), and every ``keyring:`` reference read from the keyring. Unchanged when there
    is nothing to resolve. ``section`` names the model's settings in messages
    (``llm.fallback[0]`` for a fallback model).

    Raises:
        MissingApiKeyError: the command failed or printed no usable key, or a keyring
            entry (or the keyring package) is missing.
    """
    keys: List[str] = list(model.api_keys)
    if model.api_key_command:
        keys[0] = run_key_command(model.api_key_command, setting=f"{section}.api_key_command")
    for i, key in enumerate(keys):
        if key.startswith(KEYRING_PREFIX):
            setting = f"{section}.api_key" if i == 0 else f"{section}.api_key[{i}]"
            keys[i] = read_keyring(key, setting=setting)
    if tuple(keys) == model.api_keys:
        return model
    return replace(model, api_key=keys[0], extra_api_keys=tuple(keys[1:]))


def run_key_command(command: str, *, timeout: float = KEY_COMMAND_TIMEOUT_SECONDS,
                    setting: str = "llm.model.api_key_command") -> str:
    """Run ``command`` (split like a shell would, but without one) and return its
    stdout, stripped. ``setting`` names the command's setting in messages.

    Raises:
        MissingApiKeyError: the command cannot be parsed or started, runs past
            ``timeout`` seconds, exits non-zero (the message carries the first line of
            its stderr, never its stdout), or prints nothing, more than one line, or
            more than MAX_KEY_CHARS characters.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise MissingApiKeyError(f"{setting} cannot be parsed ({exc}): quote it as a shell would") from None
    if not argv:
        raise MissingApiKeyError(f"{setting} is empty: give a command that prints the key")
    program = argv[0]
    logger.debug("reading the API key from %s (%s)", setting, program)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              check=False, shell=False)
    except FileNotFoundError:
        raise MissingApiKeyError(f"{setting}: program {program!r} not found: install it or give its "
                                 "full path") from None
    except PermissionError:
        raise MissingApiKeyError(f"{setting}: program {program!r} is not executable") from None
    except OSError as exc:  # a script without #! line (ENOEXEC), a path through a file, ...
        raise MissingApiKeyError(f"{setting}: program {program!r} cannot be run: "
                                 f"{exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise MissingApiKeyError(f"{setting}: {program!r} did not finish within {timeout:g} s "
                                 "(is it waiting for a passphrase? it runs without a terminal)") from None
    key = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        reason = _first_line(done.stderr.decode("utf-8", "replace"), hide=key) or "no message on stderr"
        raise MissingApiKeyError(
            f"{setting}: {program!r} failed with exit status {done.returncode}: {reason}")
    if not key:
        raise MissingApiKeyError(f"{setting}: {program!r} printed nothing: it must print the API key")
    if len(key) > MAX_KEY_CHARS:
        raise MissingApiKeyError(f"{setting}: {program!r} printed {len(key)} characters, too many for "
                                 "an API key: make it print only the key")
    if any(c.isspace() for c in key):
        raise MissingApiKeyError(f"{setting}: {program!r} printed more than a key (it contains spaces "
                                 "or several lines): make it print only the key")
    return key


def read_keyring(reference: str, *, setting: str = "llm.model.api_key") -> str:
    """The password stored under ``keyring:SERVICE/USERNAME`` (split at the last ``/``,
    so a service name may hold slashes).

    Raises:
        MissingApiKeyError: a malformed reference, the ``keyring`` package missing, the
            keyring failing, or no such entry.
    """
    service, _, username = reference[len(KEYRING_PREFIX):].rpartition("/")
    if not service or not username:
        raise MissingApiKeyError(f"{setting} {reference!r} must look like 'keyring:SERVICE/USERNAME'")
    try:
        import keyring
    except ImportError:
        raise MissingApiKeyError(
            f"{setting} reads the system keyring, but the 'keyring' package is not installed: "
            "pip install 'cowork-llm[keyring]'"
        ) from None
    try:
        password: Optional[str] = keyring.get_password(service, username)
    except Exception as exc:  # keyring.errors.KeyringError and backend-specific failures
        raise MissingApiKeyError(f"{setting}: the keyring could not be read for service {service!r}, "
                                 f"user {username!r}: {type(exc).__name__}: {exc}") from None
    if not password:
        raise MissingApiKeyError(
            f"{setting}: the keyring has no entry for service {service!r}, user {username!r}: "
            f"add one with `keyring set {service} {username}`"
        )
    return password.strip()


def _first_line(text: str, *, hide: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.replace(hide, "[REDACTED]")[:300] if hide else line[:300]
    return ""
