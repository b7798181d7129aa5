"""`cowork-llm embed`: one JSON line per text on stdout, in order; exit 2 for a
configuration error or no text, 1 for an API error; never the key."""

import io
import json

import pytest

from cowork_llm.cli import main
from cowork_llm.testing import FakeLlmServer
from cowork_llm.testing._echo import hash_vector

KEY = "sk-cli-embed-SECRET-0123456789abcdef"


@pytest.fixture
def server(monkeypatch):
    with FakeLlmServer(api_key=KEY) as srv:
        for name, value in srv.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("COWORK_LLM_EMBEDDINGS_MODEL_NAME", "emb-cli")
        yield srv


def embed(capsys, *argv):
    code = main(["embed", *argv])
    out, err = capsys.readouterr()
    assert KEY not in out + err and KEY[-8:] not in out + err
    return code, out, err


def test_prints_one_json_line_per_text_in_order(server, capsys):
    code, out, err = embed(capsys, "first", "second")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["index"] for line in lines] == [0, 1]
    assert lines[1]["embedding"] == pytest.approx(hash_vector("second"))
    assert lines[0]["model"] == "emb-cli"
    assert server.embedding_requests[0].body["input"] == ["first", "second"]


def test_dash_reads_texts_from_stdin_one_per_line_and_dimensions_pass_through(server, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("alpha\n\nbeta\n"))
    code, out, _ = embed(capsys, "--dimensions", "3", "-")
    assert code == 0
    assert [len(json.loads(line)["embedding"]) for line in out.splitlines()] == [3, 3]
    assert server.embedding_requests[0].body["input"] == ["alpha", "beta"]


def test_usage_goes_to_stderr(server, capsys):
    code, out, err = embed(capsys, "--usage", "a")
    assert code == 0 and len(out.splitlines()) == 1
    assert "embeddings: 1 request" in err


def test_no_embeddings_model_is_exit_2_and_sends_nothing(server, capsys, monkeypatch):
    monkeypatch.delenv("COWORK_LLM_EMBEDDINGS_MODEL_NAME")
    code, out, err = embed(capsys, "a")
    assert code == 2 and out == ""
    assert "ConfigError" in err and "COWORK_LLM_EMBEDDINGS_MODEL_NAME" in err
    assert server.requests == []


@pytest.mark.parametrize("argv", [["-"], ["a", " "]])
def test_no_text_or_a_blank_text_is_exit_2(server, capsys, monkeypatch, argv):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n  \n"))
    code, _, err = embed(capsys, *argv)
    assert code == 2 and "cowork-llm embed:" in err
    assert server.requests == []


def test_an_api_error_is_exit_1_with_one_line(server, capsys, monkeypatch):
    monkeypatch.setenv("COWORK_LLM_RETRY_MAX_ATTEMPTS", "1")
    server.fail_next(500, path=server.EMBEDDINGS_PATH)
    code, out, err = embed(capsys, "a")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "ServerError" in err
