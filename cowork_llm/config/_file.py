"""The config file: which file, its ``[llm]`` table, and the sections only a file can set.

The file is the ``path`` argument, else the file named by ``COWORK_CONFIG``, else
``./config.toml``. A missing default file or one without an ``[llm]`` table is not an
error (the environment may hold the whole configuration); an unreadable one is. Pricing
and fallback models can only be set here, so they are read and built here too.
"""

import logging
import os
import stat
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError, ConfigNotFoundError, MissingApiKeyError
from ..secrets import KEYRING_PREFIX
from ._keys import KEYS_BY_SECTION, close_match, is_blank, split_api_keys, unknown_setting
from ._sections import LlmConfig, ModelConfig, ModelPrice

__all__ = ["CONFIG_PATH_VARIABLE", "DEFAULT_CONFIG_FILE", "FILE_ONLY_SECTIONS", "choose_file",
           "read_llm_table", "section_table", "warn_unknown_keys", "warn_if_key_file_is_readable",
           "load_pricing", "load_fallbacks"]

logger = logging.getLogger(__name__)

CONFIG_PATH_VARIABLE = "COWORK_CONFIG"
DEFAULT_CONFIG_FILE = "config.toml"
FILE_ONLY_SECTIONS = ("pricing", "fallback")
# A config file is a few KB; anything this big is the wrong file (or /dev/zero).
MAX_CONFIG_BYTES = 1 << 20
# How long a pipe or device given as the config file (``--config <(sops -d ...)``) may
# take to deliver it: a FIFO nobody writes to would otherwise block forever.
PIPE_WAIT_SECONDS = 5.0
_PRICE_FIELDS = ["input_per_million", "output_per_million"]


def choose_file(path: "Optional[str | os.PathLike[str]]") -> Tuple[str, Optional[str]]:
    """The file to read and what named it (None for the ./config.toml default)."""
    if path is not None:
        return os.path.abspath(os.fspath(path)), "--config or load_config's path argument"
    from_env = os.environ.get(CONFIG_PATH_VARIABLE, "").strip()
    if from_env:
        return os.path.abspath(from_env), CONFIG_PATH_VARIABLE
    return os.path.abspath(DEFAULT_CONFIG_FILE), None


def read_llm_table(file_path: str, named_by: Optional[str]) -> Tuple[Optional[Dict[str, Any]], str]:
    """The file's [llm] table, or None and why an existing file is ignored ("" if absent).

    Raises ConfigNotFoundError for an explicitly named file that does not exist and
    ConfigError for a file that exists but cannot be read, or for an explicitly named file
    that is not valid TOML (the implicit ./config.toml is then skipped with a warning).
    """
    try:
        data = _read_bytes(file_path)
    except FileNotFoundError:
        if named_by is not None:
            raise ConfigNotFoundError(
                f"config file {file_path} (named by {named_by}) does not exist") from None
        return None, ""
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file_path}: {exc.strerror or exc}") from None
    try:
        document = _parse_toml(data)
    except ValueError as exc:  # TOMLDecodeError, UnicodeDecodeError, an int too long to convert
        problem = f"{file_path} is not valid TOML: {exc}"
        if named_by is not None:  # a file the user named must be the one used: never skip it
            raise ConfigError(f"config file {problem} (named by {named_by}): fix it, or name "
                              "another file") from None
        logger.warning("%s; ignoring the file and using the COWORK_LLM_* variables", problem)
        return None, problem
    table = document.get("llm")
    if table is None:
        log = logger.warning if named_by else logger.info
        log("config file %s has no [llm] table; ignoring it", file_path)
        return None, f"{file_path} has no [llm] table"
    if not isinstance(table, dict):
        raise ConfigError(f"llm in {file_path} must be a table ([llm]), got a {type(table).__name__}")
    return table, ""


def _read_bytes(file_path: str) -> bytes:
    """The file's bytes. A pipe or device is read without blocking for more than
    PIPE_WAIT_SECONDS. Raises OSError, and ConfigError for a file over MAX_CONFIG_BYTES
    or a pipe nobody writes to."""
    mode = os.stat(file_path).st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or os.name != "posix":
        with open(file_path, "rb") as fh:  # a directory fails here with "Is a directory"
            data = fh.read(MAX_CONFIG_BYTES + 1)
    else:
        data = _read_pipe(file_path)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {file_path} is larger than {MAX_CONFIG_BYTES // 1024} KB; "
                          "a config file is a few KB: is it the right file?")
    return data


def _read_pipe(file_path: str) -> bytes:
    """Up to MAX_CONFIG_BYTES + 1 bytes of a FIFO or device, until end of file.
    Raises OSError, and ConfigError when it is still open after PIPE_WAIT_SECONDS."""
    import select

    fd = os.open(file_path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO without writer: no block
    try:
        chunks: List[bytes] = []
        size = 0
        deadline = time.monotonic() + PIPE_WAIT_SECONDS
        while size <= MAX_CONFIG_BYTES:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise ConfigError(
                    f"config file {file_path} is a pipe or device that did not deliver a whole "
                    f"file within {PIPE_WAIT_SECONDS:g} s (is anything writing to it?); "
                    "give the path of a regular file")
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse_toml(data: bytes) -> Dict[str, Any]:
    """The TOML document. Raises ValueError (with a line and column where the parser
    gives one) for anything that is not a UTF-8 TOML document."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError("the file is UTF-16 encoded; save it as UTF-8")
    try:
        # A UTF-8 byte order mark (Notepad adds one) is not part of the document.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start + 1}); save it as UTF-8") from None
    toml = _toml_module()
    try:
        return toml.loads(text)  # type: ignore[no-any-return]
    except RecursionError:
        raise ValueError("values nested too deeply") from None
    except toml.TOMLDecodeError:
        raise
    except ValueError as exc:  # an integer of more than 4300 digits; drop the advice after ";"
        raise ValueError(str(exc).split(";")[0]) from None


def _toml_module() -> Any:
    """tomllib (tomli before Python 3.11), imported only when there is a file to parse:
    a configuration from the environment alone does not pay its ~1.5 ms."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib


def section_table(table: Mapping[str, Any], section: str, file_path: str = "") -> Dict[str, Any]:
    """``table[section]`` ({} when absent). Raises ConfigError (naming ``file_path``)
    when it is not a table."""
    value = table.get(section, {})
    if not isinstance(value, dict):
        where = f" (in {file_path})" if file_path else ""
        raise ConfigError(f"llm.{section} must be a table ([llm.{section}] or {section}.<key> = ...), "
                          f"got a {type(value).__name__}{where}")
    return value


def warn_unknown_keys(given: Mapping[str, Any], known: Any, prefix: str, file_path: str,
                      extra: Optional[List[str]] = None) -> None:
    """Log a warning for each key of ``given`` not in ``known``, with a "did you mean"
    from ``known`` and ``extra``. Raises ConfigError instead when the running
    load_config is strict."""
    candidates = list(known) + list(extra or [])
    for name in given:
        if name in known:
            continue
        close = close_match(name, candidates, 0.6)
        hint = f"; did you mean {prefix}.{close}?" if close else ""
        unknown_setting(f"unknown key {prefix}.{name} in {file_path} is ignored{hint}",
                        key=f"{prefix}.{name}")


def warn_if_key_file_is_readable(file_path: str, config: LlmConfig, sources: Mapping[str, str]) -> None:
    """Like ssh: a literal key in a file others can read deserves a loud warning."""
    if os.name != "posix":
        return
    literal = [m.api_key for m in config.fallback] + (
        [config.model.api_key] if sources["model.api_key"].startswith("file:") else [])
    if not any(k and not k.startswith(KEYRING_PREFIX) for k in literal):
        return
    try:
        mode = os.stat(file_path).st_mode & 0o777
    except OSError:
        return
    if mode & 0o044:
        logger.warning("config file %s holds an API key and is readable by group or others "
                       "(permissions %04o); run: chmod 600 %s", file_path, mode, file_path)


def load_pricing(table: Mapping[str, Any], file_path: str) -> Dict[str, ModelPrice]:
    """The ``[llm.pricing."MODEL"]`` tables as prices by model name.
    Raises ConfigError naming the entry and the file."""
    prices = {}
    for model_name, entry in table.items():
        prefix = f'llm.pricing."{model_name}"'
        if not isinstance(entry, dict):
            raise ConfigError(f"{prefix} must be a table with {' and '.join(_PRICE_FIELDS)} "
                              f"(in {file_path})")
        warn_unknown_keys(entry, _PRICE_FIELDS, prefix, file_path)
        for name in _PRICE_FIELDS:
            if name not in entry:
                raise ConfigError(f"{prefix}.{name} is required (in {file_path})")
        try:
            prices[model_name] = ModelPrice(**{n: entry[n] for n in _PRICE_FIELDS})
        except ConfigError as exc:
            message = str(exc).replace("llm.pricing.", f"{prefix}.", 1)
            raise type(exc)(f"{message} (in {file_path})") from None
    return prices


def load_fallbacks(entries: Any, file_path: str) -> Tuple[ModelConfig, ...]:
    """The ``[[llm.fallback]]`` entries, each a full model section.
    Raises ConfigError (MissingApiKeyError for a missing key) naming the entry and the file."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"llm.fallback must be an array of tables ([[llm.fallback]]) in {file_path}")
    models = []
    model_keys = KEYS_BY_SECTION["model"]
    known = [k.name for k in model_keys]
    for index, entry in enumerate(entries):
        prefix = f"llm.fallback[{index}]"
        warn_unknown_keys(entry, known, prefix, file_path)
        values = {k: v for k, v in entry.items() if k in known and not is_blank(v)}
        for key in model_keys:
            if not key.required or key.name in values:
                continue
            if key.name == "api_key" and values.get("api_key_command"):
                continue
            error = MissingApiKeyError if key.name == "api_key" else ConfigError
            raise error(f"{prefix}.{key.name} is required: each [[llm.fallback]] is a full "
                        f"model section (in {file_path})")
        if "api_key" not in values and values.get("api_key_command"):
            values["api_key"] = ""  # fetched by the client, as for [llm.model]
        split_api_keys(values, prefix)
        try:
            models.append(ModelConfig(**values))
        except ConfigError as exc:
            # config.py's hint about COWORK_LLM_API_KEY is for the primary model only.
            message = str(exc).replace("llm.model.", f"{prefix}.", 1).split(" (set COWORK_LLM_")[0]
            raise type(exc)(f"{message} (in {file_path})") from None
    return tuple(models)
