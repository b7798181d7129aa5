"""Fixtures shared by the reliability suites."""

import pytest

from cowork_llm.testing import FakeLlmServer

from ._helpers import SECRET_KEY


@pytest.fixture
def server():
    with FakeLlmServer(api_key=SECRET_KEY) as fake:
        yield fake
