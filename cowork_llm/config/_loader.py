"""load_config(): the config file, then COWORK_LLM_* variables, then defaults — per field.

The file is the ``path`` argument, else the file named by ``COWORK_CONFIG``, else
``./config.toml``; only its ``[llm]`` table is read. For each field a value in the file
wins, a field the file leaves out comes from its variable, else from its default; where
each value came from is kept in ``LlmConfig.sources``. Pricing and fallback models can
only be set in the file. An empty string (in the file or a variable) counts as unset.

This module merges the sources; reading the file is :mod:`._file`'s job, the
table of keys and the parsing of variables :mod:`._keys`'.
"""

import logging
import os
from typing import Any, Dict, List, Mapping, Optional

from .._logging import warn_if_level_invalid
from ..errors import ConfigError, ConfigNotFoundError, MissingApiKeyError
from ._file import (
    CONFIG_PATH_VARIABLE,
    DEFAULT_CONFIG_FILE,
    FILE_ONLY_SECTIONS,
    choose_file,
    load_fallbacks,
    load_pricing,
    read_llm_table,
    section_table,
    warn_if_key_file_is_readable,
    warn_unknown_keys,
)
from ._keys import (
    CONFIG_KEYS,
    KEYS_BY_SECTION,
    SECTIONS,
    STRICT,
    ConfigKey,
    is_blank,
    parse_variable,
    split_api_keys,
    strict_from_env,
    variables_set,
    warn_unknown_variables,
)
from ._sections import LlmConfig

__all__ = ["load_config", "ConfigKey", "CONFIG_KEYS", "CONFIG_PATH_VARIABLE", "DEFAULT_CONFIG_FILE"]

logger = logging.getLogger(__name__)

_ENV_SOURCE = "env:"
_FILE_SOURCE = "file:"


def load_config(path: "Optional[str | os.PathLike[str]]" = None, *,
                strict: Optional[bool] = None) -> LlmConfig:
    """Resolve the configuration from the file, the environment and the defaults.

    An unknown key, section or COWORK_LLM_* variable is a warning with a "did you mean";
    with ``strict`` (default: COWORK_LLM_STRICT) it is a ConfigError.

    Raises ConfigNotFoundError when there is neither a file with an ``[llm]`` table nor a
    COWORK_LLM_* variable (or when an explicitly named file does not exist),
    MissingApiKeyError when no key is set anywhere, and ConfigError (naming the key,
    variable or file) for anything unreadable, unparsable or invalid.
    """
    # None: the variable, or a caller's outer strict scope (the CLI's --strict).
    warn_if_level_invalid()
    token = STRICT.set((strict_from_env() or STRICT.get()) if strict is None else strict)
    try:
        return _load(path)
    finally:
        STRICT.reset(token)


def _load(path: "Optional[str | os.PathLike[str]]") -> LlmConfig:
    file_path, named_by = choose_file(path)
    table, ignored_because = read_llm_table(file_path, named_by)
    env = variables_set(os.environ)
    warn_unknown_variables(os.environ)
    if table is None and not env:
        raise ConfigNotFoundError(_not_found_message(file_path, ignored_because))
    table = table or {}
    warn_unknown_keys(table, SECTIONS.keys() | set(FILE_ONLY_SECTIONS), "llm", file_path,
                      extra=[k.path for k in CONFIG_KEYS])

    origin = _FILE_SOURCE + file_path
    sources: Dict[str, str] = {}
    chosen: Dict[str, Dict[str, Any]] = {}
    for section in SECTIONS:
        given = section_table(table, section, file_path)
        warn_unknown_keys(given, [k.name for k in KEYS_BY_SECTION[section]], f"llm.{section}", file_path)
        chosen[section] = _merge_section(section, given, env, origin, sources)
    missing = [k for k in CONFIG_KEYS if k.required and k.name not in chosen[k.section]]
    if missing:
        raise _missing_error(missing, file_path, ignored_because)
    split_api_keys(chosen["model"], "llm.model")
    sources["model.extra_api_keys"] = sources["model.api_key"]

    built = {s: _build(cls, chosen[s], sources) for s, cls in SECTIONS.items()}
    pricing = load_pricing(section_table(table, "pricing", file_path), file_path)
    fallback = load_fallbacks(table.get("fallback", []), file_path)
    sources["pricing"] = origin if pricing else "default"
    sources["fallback"] = origin if fallback else "default"
    config = LlmConfig(**built, pricing=pricing, fallback=fallback, sources=sources)

    if table:
        warn_if_key_file_is_readable(file_path, config, sources)
    variables_used = sorted({s[len(_ENV_SOURCE):] for s in sources.values() if s.startswith(_ENV_SOURCE)})
    logger.info("configuration loaded: file %s; variables %s",
                file_path if table else "none", ", ".join(variables_used) or "none")
    logger.debug("resolved configuration %r (sources %s)", config, sources)
    return config


def _merge_section(section: str, given: Mapping[str, Any], env: Mapping[str, str], origin: str,
                   sources: Dict[str, str]) -> Dict[str, Any]:
    """One section's values: the file's, else the variable's (parsed); records each
    field's source in ``sources``. Required fields set nowhere are left out.
    Raises ConfigError for a variable that cannot be parsed."""
    values: Dict[str, Any] = {}
    for key in KEYS_BY_SECTION[section]:
        if not is_blank(given.get(key.name)):
            values[key.name] = given[key.name]
            sources[key.path] = origin
        elif key.variable in env:
            values[key.name] = parse_variable(key, env[key.variable])
            sources[key.path] = _ENV_SOURCE + key.variable
        elif not key.required:
            sources[key.path] = "default"
    if section == "model" and "api_key" not in values and values.get("api_key_command"):
        values["api_key"], sources["model.api_key"] = "", "default"  # fetched by the client
    return values


def _build(cls: Any, values: Dict[str, Any], sources: Mapping[str, str]) -> Any:
    """Build one section; a failure names where the bad value came from."""
    try:
        return cls(**values)
    except ConfigError as exc:
        source = sources.get((exc.key or "").removeprefix("llm."), "")
        variable = None
        if source.startswith(_ENV_SOURCE):
            variable = source[len(_ENV_SOURCE):]
            where = f" (from {variable})"
        elif source.startswith(_FILE_SOURCE):
            where = f" (in {source[len(_FILE_SOURCE):]})"
        else:
            where = ""
        raise type(exc)(f"{exc}{where}", key=exc.key, variable=variable) from None


def _not_found_message(file_path: str, ignored_because: str) -> str:
    required_variables = ", ".join(k.variable for k in CONFIG_KEYS if k.required)
    return (
        f"no LLM configuration found ({ignored_because or f'no config file at {file_path}'}; "
        "no COWORK_LLM_* variable is set). "
        f"Either write one with `cowork-llm init --template > {DEFAULT_CONFIG_FILE}` and fill in "
        f"api_key under [llm.model], or set {required_variables} "
        f"(another file can be named with --config or {CONFIG_PATH_VARIABLE})"
    )


def _missing_error(missing: List[ConfigKey], file_path: str, ignored_because: str) -> ConfigError:
    # Both spellings: a file from `init --template` has [llm.model] tables, the README's
    # example uses dotted keys under [llm]; mixing the two for one table is a TOML error.
    parts = [f"add {k.name} under [llm.{k.section}] (or {k.path} under [llm]) in {file_path}, "
             f"or set {k.variable}" for k in missing]
    names = ", ".join(f"llm.{k.path}" for k in missing)
    message = f"{names} {'is' if len(missing) == 1 else 'are'} not set: {'; '.join(parts)}"
    if ignored_because:
        message += f" (the config file was ignored: {ignored_because})"
    error = MissingApiKeyError if any(k.name == "api_key" for k in missing) else ConfigError
    return error(message)
