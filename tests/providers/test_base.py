"""HttpProvider: what one attempt sends, and what its error tells about the answer that caused it."""

from dataclasses import replace

import pytest
import responses

from cowork_llm.config import ModelConfig
from cowork_llm.errors import InvalidResponseError, ServerError
from cowork_llm.providers import build_provider

URL = "https://api.example.com/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
CONFIG = ModelConfig(base_url="https://api.example.com/v1", api_key="sk-base-0123456789abcdef",
                     model_name="m")


def test_an_answer_over_max_response_bytes_names_its_status_and_request():
    config = replace(CONFIG, max_response_bytes=1024)
    with responses.RequestsMock() as mock, build_provider(config) as llm:
        mock.post(URL, body="x" * 5000, status=200, content_type="application/json",
                  headers={"x-request-id": "req_big"})
        with pytest.raises(InvalidResponseError) as info:
            llm.chat(MESSAGES)
    assert "more than model.max_response_bytes = 1024 bytes" in info.value.message
    assert info.value.status_code == 200 and info.value.request_id == "req_big"


@pytest.mark.parametrize("stream, accept", [(False, "application/json"), (True, "text/event-stream")])
def test_a_request_asks_for_its_answer_type_compressed_only_in_ways_read_within_the_cap(stream, accept):
    # brotli or zstd would be inflated by urllib3 in one piece, past max_response_bytes.
    with responses.RequestsMock() as mock, build_provider(CONFIG) as llm:
        mock.post(URL, status=500, json={"error": {"message": "down"}})
        with pytest.raises(ServerError):
            llm.stream(MESSAGES) if stream else llm.chat(MESSAGES)
        headers = mock.calls[0].request.headers
    assert headers["Accept"] == accept
    assert headers["Accept-Encoding"] == "gzip, deflate"


def test_a_300_answer_is_not_taken_for_a_success_even_with_a_usable_body():
    answer = {"choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "ok"}}]}
    with responses.RequestsMock() as mock, build_provider(CONFIG) as llm:
        mock.post(URL, status=300, json=answer)
        with pytest.raises(InvalidResponseError, match="openai answered HTTP 300"):
            llm.chat(MESSAGES)


def test_a_chat_result_carries_the_rate_limits_its_answer_reported():
    answer = {"choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "ok"}}]}
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
               "x-ratelimit-reset-requests": "1s"}
    with responses.RequestsMock() as mock, build_provider(CONFIG) as llm:
        mock.post(URL, json=answer, headers=headers)
        result = llm.chat(MESSAGES)
    assert result.rate_limits is not None and result.rate_limits.family == "openai"
    requests_limit = result.rate_limits.get("requests")
    assert requests_limit is not None and (requests_limit.limit, requests_limit.remaining) == (60, 59)


def test_an_answer_that_declares_utf8_but_is_not_is_refused():
    # Left to requests, the bad bytes would become U+FFFD and the damaged answer pass.
    with responses.RequestsMock() as mock, build_provider(CONFIG) as llm:
        mock.post(URL, body=b'{"choices": [{"index": 0, "message": {"content": "fi\xffne"}}]}',
                  content_type="application/json; charset=utf-8")
        with pytest.raises(InvalidResponseError, match="not valid UTF-8 .byte 0xff"):
            llm.chat(MESSAGES)
