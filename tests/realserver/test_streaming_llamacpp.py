"""OpenAIClient.stream() against llama.cpp's own server: real SSE, real chunked encoding,
``stream_options.include_usage``, ``data: [DONE]``."""

import pytest

from cowork_llm.errors import AuthenticationError
from cowork_llm.providers import build_provider

pytestmark = pytest.mark.realserver

MESSAGES = [{"role": "user", "content": "Count: one, two, three,"}]


def test_stream_to_the_end_matches_the_plain_answer(llamacpp_server):
    with build_provider(llamacpp_server.config().model) as llm:
        stream = llm.stream(MESSAGES, temperature=0.0, max_tokens=16)
        pieces = list(stream)
        plain = llm.chat(MESSAGES, temperature=0.0, max_tokens=16)
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    assert stream.content == plain.content  # temperature 0: the same tokens either way
    assert stream.usage is not None and stream.usage.completion_tokens == plain.usage.completion_tokens
    assert stream.finish_reason == plain.finish_reason and stream.closed


def test_stream_closed_early_leaves_the_client_usable(llamacpp_server):
    with build_provider(llamacpp_server.config().model) as llm:
        stream = llm.stream(MESSAGES, max_tokens=32)
        ran = []
        stream.on_close.append(lambda: ran.append(1))
        next(stream)
        stream.close()
        assert ran == [1]
        assert llm.chat(MESSAGES, max_tokens=4).content


def test_stream_with_a_wrong_key_fails_before_the_first_piece(llamacpp_server):
    model = llamacpp_server.config(api_key="sk-wrong-0000000000000").model
    with build_provider(model) as llm, pytest.raises(AuthenticationError):
        llm.stream(MESSAGES)
