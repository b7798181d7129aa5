"""examples/telemetry.py runs as a user runs it and prints what its docstring promises:
three GenAI spans (a retry, a limiter wait) and the metrics, from the SDK's console exporters."""

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry.py"


def _json_documents(text):
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text):
        start = text.find("{", at)
        if start < 0:
            break
        document, at = decoder.raw_decode(text, start)
        documents.append(document)
    return documents


def test_the_example_prints_spans_with_a_retry_and_a_limiter_wait_then_metrics(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "answer: echo: Name a colour, in one word." in done.stdout
    documents = _json_documents(done.stdout)
    spans = [d for d in documents if d.get("kind") == "SpanKind.CLIENT"]
    assert [s["name"] for s in spans] == ["chat fake-model"] * 3
    retried = spans[0]
    statuses = [e["attributes"]["cowork_llm.attempt.status"] for e in retried["events"]]
    assert statuses == ["error", "ok"]
    assert retried["events"][0]["attributes"]["http.response.status_code"] == 503
    waits = sorted(s["attributes"]["cowork_llm.limiter.wait"] for s in spans[1:])
    assert waits[-1] > 0.3  # one of the two threads waited for the 0.5 s interval
    (metrics,) = [d for d in documents if "resource_metrics" in d]
    names = {m["name"] for rm in metrics["resource_metrics"] for sm in rm["scope_metrics"]
             for m in sm["metrics"]}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration",
            "cowork_llm.limiter.wait"} <= names
