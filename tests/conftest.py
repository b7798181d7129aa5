"""Every test runs in its own temp directory with no COWORK_* variables set, and leaves
the process-wide limiter registry as it found it."""

import logging
import os

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("COWORK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    logging.getLogger("cowork_llm").setLevel(logging.NOTSET)
