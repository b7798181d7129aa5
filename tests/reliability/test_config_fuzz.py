"""Config fuzzing: random TOML documents and COWORK_LLM_* values. Whatever comes in,
load_config either returns an LlmConfig or raises a ConfigError subclass — never a
KeyError, TypeError, AttributeError or a bare ValueError from a dependency.

Runs derandomized with no example database, so CI sees the same examples every time.
"""

import datetime
import json
import math
import os
from typing import Any, Dict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cowork_llm.config import CONFIG_KEYS, LlmConfig, load_config
from cowork_llm.errors import ConfigError

FUZZ = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SECTIONS = sorted({k.section for k in CONFIG_KEYS}) + ["pricing", "fallback", "bogus"]
FIELD_NAMES = sorted({k.name for k in CONFIG_KEYS}) + ["api_keys", "input_per_million", "x"]
VARIABLES = sorted(k.variable for k in CONFIG_KEYS)

# Values a user might plausibly write, and values nobody should.
plausible = st.sampled_from([
    "https://api.openai.com/v1", "http://10.0.0.5/v1", "http://localhost:8080/v1", "api.openai.com",
    "sk-abcdefghijklmnopqrstuvwx", "gpt-4o-mini", "openai", "anthropic", "memory", "sqlite",
    "redis", "none", "", " ", "keyring:svc/user", "echo key", "0", "-1", "1e400", "nan",
])
scalars = st.one_of(
    plausible,
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), inner,
                                                                 max_size=3),
    max_leaves=6,
)


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (enough of TOML for the fuzzer's values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in a TOML basic string
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def toml_documents(draw: Any) -> str:
    """An ``[llm]`` document with random sections, known and unknown keys, any values."""
    lines = []
    if draw(st.booleans()):
        lines.append("[llm]")
        for name, value in draw(st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=3)).items():
            lines.append(f"{name} = {toml_value(value)}")
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=4, unique=True)):
        if section == "fallback":
            for _ in range(draw(st.integers(0, 2))):
                lines.append("[[llm.fallback]]")
                for name, value in draw(st.dictionaries(st.sampled_from(FIELD_NAMES), values,
                                                        max_size=4)).items():
                    lines.append(f"{name} = {toml_value(value)}")
            continue
        lines.append(f"[llm.{section}]")
        for name, value in draw(st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=6)).items():
            lines.append(f"{name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


VALID_MODEL = {"base_url": "https://api.openai.com/v1", "api_key": "sk-abcdefghijklmnopqrstuvwx",
               "model_name": "gpt-4o-mini"}


@st.composite
def near_valid_documents(draw: Any) -> str:
    """A valid document with a few known keys set to random values: reaches the
    validators of every section instead of stopping at the first missing field."""
    sections: Dict[str, Dict[str, Any]] = {"model": dict(VALID_MODEL)}
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), min_size=1, max_size=3)):
        sections.setdefault(key.section, {})[key.name] = draw(values)
    return "".join(f"[llm.{section}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())
                   for section, fields in sections.items())


def _load_with(document: bytes, environ: Dict[str, str]) -> None:
    """load_config on ``document`` with ``environ`` set; fail on any non-ConfigError."""
    with open("config.toml", "wb") as file:
        file.write(document)
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        config = load_config()
    except ConfigError as error:
        assert str(error), "a ConfigError must say what is wrong"
    else:
        assert isinstance(config, LlmConfig)
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


env_values = st.dictionaries(
    st.sampled_from(VARIABLES),
    plausible | st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                        max_size=20),
    max_size=6,
)


@FUZZ
@given(document=toml_documents(), environ=env_values)
def test_random_toml_documents_and_variables_raise_only_config_errors(document, environ):
    _load_with(document.encode(), environ)


@FUZZ
@given(document=near_valid_documents(), environ=env_values)
def test_valid_documents_with_random_values_raise_only_config_errors(document, environ):
    _load_with(document.encode(), environ)


@FUZZ
@given(document=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_as_the_config_file_raise_only_config_errors(document):
    _load_with(document, {})


@FUZZ
@given(environ=env_values.filter(bool))
def test_variables_alone_raise_only_config_errors(environ):
    _load_with(b"", environ)


def test_the_fuzzer_reaches_valid_configurations_too():
    # Guard against a fuzzer whose every example fails early: a plain valid document
    # written by toml_value must load.
    document = "[llm.model]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in {
        "base_url": "https://api.openai.com/v1", "api_key": "sk-abcdefghijklmnopqrstuvwx",
        "model_name": "gpt-4o-mini", "temperature": 0.5}.items()) + "\n"
    with open("config.toml", "w") as file:
        file.write(document)
    assert load_config().model.temperature == 0.5
