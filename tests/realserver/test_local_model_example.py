"""examples/local_model.py runs end to end against its own llama.cpp server."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.realserver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "local_model.py"


def test_local_model_example_prints_answers_usage_and_timing(llamacpp_server: Any) -> None:
    # The session server proves the packages are there (or skips/fails as CI demands);
    # the example starts its own, as a user's run would, from the same assembled model.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_LLM_")}
    env["COWORK_LLAMACPP_MODEL_DIR"] = str(llamacpp_server.model_path.parent)
    done = subprocess.run([sys.executable, str(EXAMPLE), "The sky is", "--max-tokens", "4"],
                          capture_output=True, text=True, timeout=120, env=env)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"llama\.cpp server for gemma-3-270m up at http://127\.0\.0\.1:\d+/v1 in [\d.]+ s", out)
    assert out.count("answer: ") == 2
    assert len(re.findall(r"usage: \d+ prompt \+ [1-4] completion = \d+ tokens; [\d.]+ tokens/s", out)) == 2
    assert re.search(r"peak memory of this process .*: \d+ MB", out)
