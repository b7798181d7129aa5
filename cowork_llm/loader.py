"""load_config(): the config file, then COWORK_LLM_* variables, then defaults — per field.

The file is the ``path`` argument, else the file named by ``COWORK_CONFIG``, else
``./config.toml``; only its ``[llm]`` table is read. For each field a value in the file
wins, a field the file leaves out comes from its variable, else from its default; where
each value came from is kept in ``LlmConfig.sources``. Pricing and fallback models can
only be set in the file. An empty string (in the file or a variable) counts as unset.
"""

import dataclasses
import logging
import math
import os
import sys
import typing
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from .config import CacheConfig, LlmConfig, ModelConfig, ModelPrice, RateLimitConfig, RetryConfig
from .errors import ConfigError, ConfigNotFoundError, MissingApiKeyError

__all__ = ["load_config", "ConfigKey", "CONFIG_KEYS", "CONFIG_PATH_VARIABLE", "DEFAULT_CONFIG_FILE"]

logger = logging.getLogger(__name__)

CONFIG_PATH_VARIABLE = "COWORK_CONFIG"
DEFAULT_CONFIG_FILE = "config.toml"
_ENV_PREFIX = "COWORK_LLM_"
_SECTIONS: Dict[str, Any] = {"model": ModelConfig, "rate_limit": RateLimitConfig,
                             "retry": RetryConfig, "cache": CacheConfig}
_FILE_ONLY_SECTIONS = ("pricing", "fallback")
# Filled from a list-valued api_key, never set on its own.
_DERIVED_FIELDS = frozenset({"extra_api_keys"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class ConfigKey(NamedTuple):
    """One settable field: where it lives in the file and which variable sets it."""

    section: str
    name: str
    variable: str
    annotation: Any
    default: Any  # dataclasses.MISSING for a required field

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def _env_variable(section: str, name: str) -> str:
    middle = "" if section == "model" else f"{section.upper()}_"
    return f"{_ENV_PREFIX}{middle}{name.upper()}"


def _collect_keys() -> Tuple[ConfigKey, ...]:
    keys = []
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in _DERIVED_FIELDS:
                continue
            default = f.default
            if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            keys.append(ConfigKey(section, f.name, _env_variable(section, f.name), hints[f.name], default))
    return tuple(keys)


CONFIG_KEYS: Tuple[ConfigKey, ...] = _collect_keys()
_KEYS_BY_VARIABLE = {k.variable: k for k in CONFIG_KEYS}


def load_config(path: "Optional[str | os.PathLike[str]]" = None) -> LlmConfig:
    """Resolve the configuration from the file, the environment and the defaults.

    Raises ConfigNotFoundError when there is neither a file with an ``[llm]`` table nor a
    COWORK_LLM_* variable (or when an explicitly named file does not exist),
    MissingApiKeyError when no key is set anywhere, and ConfigError (naming the key,
    variable or file) for anything unreadable, unparsable or invalid.
    """
    file_path, named_by = _choose_file(path)
    table, ignored_because = _read_llm_table(file_path, named_by)
    env = {name: value.strip() for name, value in os.environ.items()
           if name in _KEYS_BY_VARIABLE and value.strip()}
    _warn_unknown_variables(os.environ)
    if table is None and not env:
        raise ConfigNotFoundError(_not_found_message(file_path, ignored_because))
    table = table or {}
    _warn_unknown_keys(table, _SECTIONS.keys() | set(_FILE_ONLY_SECTIONS), "llm", file_path,
                       extra=[f"{k.section}.{k.name}" for k in CONFIG_KEYS])

    origin = f"file:{file_path}"
    sources: Dict[str, str] = {}
    chosen: Dict[str, Dict[str, Any]] = {}
    missing: List[ConfigKey] = []
    for section in _SECTIONS:
        given = _section_table(table, section)
        _warn_unknown_keys(given, _known_fields(section), f"llm.{section}", file_path)
        values: Dict[str, Any] = {}
        for key in (k for k in CONFIG_KEYS if k.section == section):
            if not _blank(given.get(key.name)):
                values[key.name] = given[key.name]
                sources[key.path] = origin
            elif key.variable in env:
                values[key.name] = _parse_variable(key, env[key.variable])
                sources[key.path] = f"env:{key.variable}"
            elif not key.required:
                sources[key.path] = "default"
        if section == "model" and "api_key" not in values and values.get("api_key_command"):
            values["api_key"], sources["model.api_key"] = "", "default"  # fetched by the client
        missing += [k for k in CONFIG_KEYS if k.section == section and k.required and k.name not in values]
        chosen[section] = values
    if missing:
        raise _missing_error(missing, file_path, ignored_because)
    _split_api_keys(chosen["model"], "llm.model")
    sources["model.extra_api_keys"] = sources["model.api_key"]

    built = {s: _build(cls, chosen[s], sources, s) for s, cls in _SECTIONS.items()}
    pricing = _load_pricing(_section_table(table, "pricing"), file_path)
    fallback = _load_fallbacks(table.get("fallback", []), file_path)
    sources["pricing"] = origin if pricing else "default"
    sources["fallback"] = origin if fallback else "default"
    config = LlmConfig(**built, pricing=pricing, fallback=fallback, sources=sources)

    if table:
        _warn_if_key_file_is_readable(file_path, config, sources)
    logger.info("configuration loaded: file %s; variables %s",
                file_path if table else "none",
                ", ".join(sorted({s[4:] for s in sources.values() if s.startswith("env:")})) or "none")
    logger.debug("resolved configuration %r (sources %s)", config, sources)
    return config


# --- the file ------------------------------------------------------------------------------


def _choose_file(path: "Optional[str | os.PathLike[str]]") -> Tuple[str, Optional[str]]:
    """The file to read and what named it (None for the ./config.toml default)."""
    if path is not None:
        return os.path.abspath(os.fspath(path)), "the path argument"
    from_env = os.environ.get(CONFIG_PATH_VARIABLE, "").strip()
    if from_env:
        return os.path.abspath(from_env), CONFIG_PATH_VARIABLE
    return os.path.abspath(DEFAULT_CONFIG_FILE), None


def _read_llm_table(file_path: str, named_by: Optional[str]) -> Tuple[Optional[Dict[str, Any]], str]:
    """The file's [llm] table, or None and why an existing file is ignored ("" if absent).

    Raises ConfigNotFoundError for an explicitly named file that does not exist and
    ConfigError for a file that exists but cannot be read.
    """
    try:
        with open(file_path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        if named_by is not None:
            raise ConfigNotFoundError(
                f"config file {file_path} (named by {named_by}) does not exist") from None
        return None, ""
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file_path}: {exc.strerror or exc}") from None
    toml = _toml_module()
    try:
        document = toml.loads(data.decode())  # what tomllib.load(fh) does
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        problem = f"{file_path} is not valid TOML: {exc}"
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


def _toml_module() -> Any:
    """tomllib (tomli before Python 3.11), imported only when there is a file to parse:
    a configuration from the environment alone does not pay its ~1.5 ms."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib


def _close_match(name: str, candidates: List[str], cutoff: float) -> Optional[str]:
    """The candidate ``name`` was probably meant to be, for a "did you mean" hint.
    difflib is imported here: only a misspelt key or variable needs it."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def _section_table(table: Mapping[str, Any], section: str) -> Dict[str, Any]:
    value = table.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"llm.{section} must be a table ([llm.{section}] or {section}.<key> = ...), "
                          f"got a {type(value).__name__}")
    return value


def _known_fields(section: str) -> List[str]:
    return [k.name for k in CONFIG_KEYS if k.section == section]


def _warn_unknown_keys(given: Mapping[str, Any], known: Any, prefix: str, file_path: str,
                       extra: Optional[List[str]] = None) -> None:
    candidates = list(known) + list(extra or [])
    for name in given:
        if name in known:
            continue
        close = _close_match(name, candidates, 0.6)
        hint = f"; did you mean {prefix}.{close}?" if close else ""
        logger.warning("unknown key %s.%s in %s is ignored%s", prefix, name, file_path, hint)


def _warn_if_key_file_is_readable(file_path: str, config: LlmConfig, sources: Mapping[str, str]) -> None:
    """Like ssh: a literal key in a file others can read deserves a loud warning."""
    if os.name != "posix":
        return
    literal = [m.api_key for m in config.fallback] + (
        [config.model.api_key] if sources["model.api_key"].startswith("file:") else [])
    if not any(k and not k.startswith("keyring:") for k in literal):
        return
    try:
        mode = os.stat(file_path).st_mode & 0o777
    except OSError:
        return
    if mode & 0o044:
        logger.warning("config file %s holds an API key and is readable by group or others "
                       "(permissions %04o); run: chmod 600 %s", file_path, mode, file_path)


# --- the environment --------------------------------------------------------------------------


def _parse_variable(key: ConfigKey, raw: str) -> Any:
    """Turn a variable's text into the field's type. Raises ConfigError naming the variable."""
    expected = key.annotation
    if typing.get_origin(expected) is typing.Union:  # Optional[X]
        if raw.lower() == "none":
            return None
        expected = next(a for a in typing.get_args(expected) if a is not type(None))
    if expected is bool:
        if raw.lower() in _TRUE_WORDS:
            return True
        if raw.lower() in _FALSE_WORDS:
            return False
        raise ConfigError(f"{key.variable} must be true or false (or 1/0, yes/no), got {raw!r}")
    if expected is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key.variable} must be an integer, got {raw!r}") from None
    if expected is float:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ConfigError(f"{key.variable} must be a finite number, got {raw!r}")
        return number
    if key.name == "api_key":  # "k1,k2" is a rotation of keys
        keys = [part.strip() for part in raw.split(",") if part.strip()]
        return keys if len(keys) > 1 else raw
    return raw


def _warn_unknown_variables(environ: Mapping[str, str]) -> None:
    for name in environ:
        if name.startswith(_ENV_PREFIX) and name not in _KEYS_BY_VARIABLE:
            close = _close_match(name, list(_KEYS_BY_VARIABLE), 0.8)
            hint = f"; did you mean {close}?" if close else ""
            logger.warning("unknown variable %s is ignored%s", name, hint)


# --- building the objects ------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list)) and not value)


def _split_api_keys(values: Dict[str, Any], prefix: str) -> None:
    """A list-valued api_key becomes api_key (the first) plus extra_api_keys (the rest)."""
    keys = values.get("api_key")
    if not isinstance(keys, list):
        return
    if not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{prefix}.api_key must be a string or a list of strings")
    values["api_key"], values["extra_api_keys"] = keys[0], tuple(keys[1:])


def _build(cls: Any, values: Dict[str, Any], sources: Mapping[str, str], section: str) -> Any:
    """Build one section; a failure names where the bad value came from."""
    try:
        return cls(**values)
    except ConfigError as exc:
        field_path = str(exc).split(" ", 1)[0].removeprefix("llm.")
        source = sources.get(field_path, "")
        where = f" (from {source[4:]})" if source.startswith("env:") else (
            f" (in {source[5:]})" if source.startswith("file:") else "")
        raise type(exc)(f"{exc}{where}") from None


def _load_pricing(table: Mapping[str, Any], file_path: str) -> Dict[str, ModelPrice]:
    prices = {}
    fields = ["input_per_million", "output_per_million"]
    for model_name, entry in table.items():
        prefix = f'llm.pricing."{model_name}"'
        if not isinstance(entry, dict):
            raise ConfigError(f"{prefix} must be a table with {' and '.join(fields)}")
        _warn_unknown_keys(entry, fields, prefix, file_path)
        for name in fields:
            if name not in entry:
                raise ConfigError(f"{prefix}.{name} is required (in {file_path})")
        try:
            prices[model_name] = ModelPrice(**{n: entry[n] for n in fields})
        except ConfigError as exc:
            message = str(exc).replace("llm.pricing.", f"{prefix}.", 1)
            raise type(exc)(f"{message} (in {file_path})") from None
    return prices


def _load_fallbacks(entries: Any, file_path: str) -> Tuple[ModelConfig, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"llm.fallback must be an array of tables ([[llm.fallback]]) in {file_path}")
    models = []
    known = _known_fields("model")
    for index, entry in enumerate(entries):
        prefix = f"llm.fallback[{index}]"
        _warn_unknown_keys(entry, known, prefix, file_path)
        values = {k: v for k, v in entry.items() if k in known and not _blank(v)}
        for key in CONFIG_KEYS:
            if key.section == "model" and key.required and key.name not in values:
                if key.name == "api_key" and values.get("api_key_command"):
                    continue
                error = MissingApiKeyError if key.name == "api_key" else ConfigError
                raise error(f"{prefix}.{key.name} is required: each [[llm.fallback]] is a full "
                            f"model section (in {file_path})")
        _split_api_keys(values, prefix)
        try:
            models.append(ModelConfig(**values))
        except ConfigError as exc:
            # config.py's hint about COWORK_LLM_API_KEY is for the primary model only.
            message = str(exc).replace("llm.model.", f"{prefix}.", 1).split(" (set COWORK_LLM_")[0]
            raise type(exc)(f"{message} (in {file_path})") from None
    return tuple(models)


# --- messages -------------------------------------------------------------------------------


def _required_variables() -> str:
    return ", ".join(k.variable for k in CONFIG_KEYS if k.required)


def _not_found_message(file_path: str, ignored_because: str) -> str:
    return (
        f"no LLM configuration found ({ignored_because or f'no config file at {file_path}'}; "
        "no COWORK_LLM_* variable is set). "
        f"Either write one with `cowork-llm init --template > {DEFAULT_CONFIG_FILE}` and fill in "
        f"model.api_key, or set {_required_variables()} "
        f"(another file can be named with --config or {CONFIG_PATH_VARIABLE})"
    )


def _missing_error(missing: List[ConfigKey], file_path: str, ignored_because: str) -> ConfigError:
    parts = [f"add {k.path} under [llm] in {file_path} or set {k.variable}" for k in missing]
    names = ", ".join(f"llm.{k.path}" for k in missing)
    message = f"{names} {'is' if len(missing) == 1 else 'are'} not set: {'; '.join(parts)}"
    if ignored_because:
        message += f" (the config file was ignored: {ignored_because})"
    error = MissingApiKeyError if any(k.name == "api_key" for k in missing) else ConfigError
    return error(message)
