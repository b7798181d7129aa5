"""Every test runs in its own temp directory with no COWORK_* variables set, and leaves
the process-wide limiter registry and the package logger as it found them."""

import logging
import os

import pytest

from cowork_llm import _logging
from cowork_llm.rate_limiter._registry import _reset_global_rate_limiters


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("COWORK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    _reset_global_rate_limiters()
    _logging._warned_values.clear()  # each test may see the invalid-level warning afresh
    yield
    _reset_global_rate_limiters()
    logging.getLogger("cowork_llm").setLevel(logging.NOTSET)
