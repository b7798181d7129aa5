"""Without opentelemetry-api (or with OTEL_SDK_DISABLED=true) nothing of it is imported."""

import os
import subprocess
import sys

import pytest

from cowork_llm.testing import FakeLlmServer

SCRIPT = """
import sys
{block}
from cowork_llm import create_llm_client
from cowork_llm.telemetry import default_observers
llm = create_llm_client()
print(llm.chat([{{"role": "user", "content": "hi"}}]).content)
llm.close()
assert default_observers() == (), default_observers()
assert not [m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v is not None]
print("no opentelemetry")
"""


@pytest.mark.parametrize("how", ["not installed", "OTEL_SDK_DISABLED"])
def test_nothing_of_opentelemetry_is_imported(how):
    block = "sys.modules['opentelemetry'] = None  # as if not installed" if how == "not installed" else ""
    env = dict(os.environ)
    env.pop("OTEL_SDK_DISABLED", None)
    if how == "OTEL_SDK_DISABLED":
        env["OTEL_SDK_DISABLED"] = "true"
    with FakeLlmServer() as server:
        env.update(server.env())
        done = subprocess.run([sys.executable, "-c", SCRIPT.format(block=block)], env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["echo: hi", "no opentelemetry"]


def test_the_observer_says_which_extra_to_install():
    script = ("import sys; sys.modules['opentelemetry'] = None\n"
              "import cowork_llm.telemetry as t\n"
              "try:\n    t.OpenTelemetryObserver\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pip install 'cowork-llm[otel]'" in done.stdout, done.stderr
