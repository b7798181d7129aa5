"""COWORK_LOG_LEVEL: level of the "cowork_llm" logger and a stderr handler only when the
application configured none."""

import contextlib
import logging
import os
import subprocess
import sys

import pytest

from cowork_llm._logging import (
    _FallbackStderrHandler,
    configure_logging_from_env,
    install_stderr_handler,
)

PACKAGE = logging.getLogger("cowork_llm")


@pytest.fixture(autouse=True)
def _no_fallback_handler_left_behind():
    yield
    for handler in list(PACKAGE.handlers):
        if isinstance(handler, _FallbackStderrHandler):
            PACKAGE.removeHandler(handler)


@contextlib.contextmanager
def bare_root_logger():
    """Logging as a bare script has it: no handler on the root logger. (pytest adds its own
    at the start of each test's call phase, so this is entered inside the test body.)"""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = saved


def fallback_handlers():
    return [h for h in PACKAGE.handlers if isinstance(h, _FallbackStderrHandler)]


@pytest.mark.parametrize("value, level", [
    ("debug", logging.DEBUG), ("INFO", logging.INFO),
    (" warning ", logging.WARNING), ("Error", logging.ERROR),
])
def test_the_variable_sets_the_package_level(value, level, monkeypatch):
    monkeypatch.setenv("COWORK_LOG_LEVEL", value)
    assert configure_logging_from_env() == level
    assert PACKAGE.level == level


def test_unset_changes_nothing():
    assert configure_logging_from_env() is None
    assert PACKAGE.level == logging.NOTSET and not fallback_handlers()


def test_an_invalid_value_warns_and_does_not_crash(monkeypatch):
    monkeypatch.setenv("COWORK_LOG_LEVEL", "verbose")
    with pytest.warns(RuntimeWarning, match=r"COWORK_LOG_LEVEL='verbose' is not one of debug, info"):
        assert configure_logging_from_env() is None
    assert PACKAGE.level == logging.NOTSET


def test_a_stderr_handler_is_added_once_when_nothing_is_configured(monkeypatch, capsys):
    monkeypatch.setenv("COWORK_LOG_LEVEL", "debug")
    with bare_root_logger():
        configure_logging_from_env()
        configure_logging_from_env()
        assert len(fallback_handlers()) == 1
        logging.getLogger("cowork_llm.config._loader").debug("hello %s", "there")
    err = capsys.readouterr().err
    assert err.count("hello there") == 1 and "DEBUG cowork_llm.config._loader" in err


def test_no_handler_when_the_application_configured_the_root_logger(monkeypatch):
    # pytest's own capture handlers sit on the root logger, like an application's would
    assert logging.getLogger().handlers
    monkeypatch.setenv("COWORK_LOG_LEVEL", "info")
    configure_logging_from_env()
    assert PACKAGE.level == logging.INFO and not fallback_handlers()


def test_no_handler_when_the_application_configured_our_logger(monkeypatch):
    own = logging.StreamHandler()
    monkeypatch.setattr(PACKAGE, "handlers", [logging.NullHandler(), own])
    with bare_root_logger():
        assert install_stderr_handler() is False
    assert PACKAGE.handlers == [PACKAGE.handlers[0], own]


def test_the_handler_steps_aside_when_the_application_configures_logging_later(capsys):
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    with bare_root_logger():
        assert install_stderr_handler() is True
        PACKAGE.warning("before")
        logging.getLogger().addHandler(Collect())  # as logging.basicConfig() would
        PACKAGE.warning("after")
    err = capsys.readouterr().err
    assert "before" in err and "after" not in err
    assert records == ["after"]


def run_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=60)


def test_importing_the_package_applies_the_variable():
    code = ("import logging, cowork_llm; log = logging.getLogger('cowork_llm.x'); "
            "log.debug('debug line'); print(logging.getLogger('cowork_llm').level)")
    result = run_python(code, COWORK_LOG_LEVEL="debug")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(logging.DEBUG)
    assert result.stderr.count("debug line") == 1


def test_basic_config_after_import_prints_each_line_once():
    code = ("import logging, cowork_llm; logging.basicConfig(); "
            "logging.getLogger('cowork_llm.x').info('info line')")
    result = run_python(code, COWORK_LOG_LEVEL="info")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("info line") == 1


def test_an_invalid_value_is_a_warning_when_a_config_is_loaded_not_a_crash():
    # Not at import: the CLI, which imports the package first, says it as one line of its own.
    code = ("import cowork_llm, sys; print('imported', flush=True); sys.stderr.write('|')\n"
            "try:\n    cowork_llm.load_config()\nexcept cowork_llm.ConfigError:\n    pass\n")
    result = run_python(code, COWORK_LOG_LEVEL="loud")
    assert result.returncode == 0 and result.stdout.strip() == "imported"
    before, _, after = result.stderr.partition("|")
    assert before == "" and after.count("COWORK_LOG_LEVEL='loud'") == 1


def test_the_cli_says_an_invalid_level_in_one_plain_line():
    result = subprocess.run([sys.executable, "-m", "cowork_llm", "init", "--template"],
                            env={**os.environ, "COWORK_LOG_LEVEL": "verbose"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "cowork-llm: COWORK_LOG_LEVEL='verbose' is not one of debug, info, warning, error; ignoring it"]
