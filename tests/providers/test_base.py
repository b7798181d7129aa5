"""HttpProvider: what an error of one attempt tells the user about the answer that caused it."""

import pytest
import responses

from cowork_llm.config import ModelConfig
from cowork_llm.errors import InvalidResponseError
from cowork_llm.providers import build_provider

URL = "https://api.example.com/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def test_an_answer_over_max_response_bytes_names_its_status_and_request():
    config = ModelConfig(base_url="https://api.example.com/v1", api_key="sk-base-0123456789abcdef",
                         model_name="m", max_response_bytes=1024)
    with responses.RequestsMock() as mock, build_provider(config) as llm:
        mock.post(URL, body="x" * 5000, status=200, content_type="application/json",
                  headers={"x-request-id": "req_big"})
        with pytest.raises(InvalidResponseError) as info:
            llm.chat(MESSAGES)
    assert "more than model.max_response_bytes = 1024 bytes" in info.value.message
    assert info.value.status_code == 200 and info.value.request_id == "req_big"
