"""The modern request against llama.cpp's own server (nobody here wrote it), through the
public client: structured output constrained by its grammar, stop sequences, seeds, both
token-limit fields, the roles and names it takes, usage details. What these measure is
written up in docs/llamacpp-notes.md ("The modern request")."""

import base64
import dataclasses
import struct
import zlib
from typing import Any, Iterator, Literal

import pytest

from cowork_llm import RetryConfig, ServerError, create_llm_client
from cowork_llm.llm import Llm

pytestmark = pytest.mark.realserver

CITY = [{"role": "user", "content": "Describe a city as JSON."}]
# Short answers: grammar-constrained sampling is slow here (~2 s a token on a busy 2-core
# machine), and a free string or integer lets the model ramble until max_tokens.
SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"enum": ["Oslo", "Paris"]}, "capital": {"type": "boolean"}},
    "required": ["city", "capital"], "additionalProperties": False}}}
FAST_RETRY = RetryConfig(max_attempts=1, total_timeout_seconds=60.0)


@dataclasses.dataclass
class City:
    city: Literal["Oslo", "Paris"]
    capital: bool


@pytest.fixture
def llm(llamacpp_server: Any) -> Iterator[Llm]:
    # A grammar-constrained answer is slower; several engineers share 2 cores: 180 s.
    client = create_llm_client(llamacpp_server.config(max_tokens=40, retry=FAST_RETRY,
                                                      timeout_seconds=180.0))
    yield client
    client.close()


def test_json_schema_gives_parsed_json_that_matches(llm: Llm) -> None:
    # llama.cpp turns the schema into a grammar: even a 270M base model answers in shape.
    result = llm.chat(CITY, response_format=SCHEMA, temperature=0)
    assert result.finish_reason == "stop"
    assert set(result.parsed) == {"city", "capital"}
    assert result.parsed["city"] in ("Oslo", "Paris") and isinstance(result.parsed["capital"], bool)


def test_a_dataclass_format_gives_an_instance(llm: Llm) -> None:
    city = llm.chat(CITY, response_format=City, temperature=0).parsed
    assert isinstance(city, City) and isinstance(city.capital, bool)


def test_stop_cuts_the_answer_before_the_sequence(llm: Llm) -> None:
    free = llm.chat(CITY, max_tokens=12, temperature=0).content
    stop = next(ch for ch in free[1:] if ch.isalpha())  # a letter the answer does contain
    cut = llm.chat(CITY, max_tokens=12, temperature=0, stop=[stop])
    assert cut.finish_reason == "stop" and stop not in cut.content
    assert free.startswith(cut.content)


def test_the_same_seed_gives_the_same_answer(llm: Llm) -> None:
    # Sampling at temperature 1: the seed alone decides (temperature 0 would be greedy anyway).
    first, second, other = (llm.chat(CITY, max_tokens=16, temperature=1.0, seed=seed, cache=False).content
                            for seed in (42, 42, 43))
    assert first == second
    assert first != other  # a different seed samples differently (true for these seeds, measured)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_it_takes_either_token_limit_field(llamacpp_server: Any, field: str) -> None:
    config = llamacpp_server.config(max_tokens=3, max_tokens_field=field, retry=FAST_RETRY)
    with create_llm_client(config) as client:
        result = client.chat(CITY)
    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 3


def test_developer_role_name_and_usage_details(llm: Llm) -> None:
    messages = [{"role": "developer", "content": "Be terse."},
                {"role": "user", "content": "Say hi.", "name": "bob"}]
    result = llm.chat(messages, max_tokens=4)
    assert result.content
    usage = result.usage
    assert usage is not None
    # llama.cpp reports its prompt cache (prompt_tokens_details.cached_tokens) but no
    # reasoning count: the one is a number, the other stays None (never a guessed 0).
    assert usage.cached_prompt_tokens is not None and 0 <= usage.cached_prompt_tokens <= usage.prompt_tokens
    assert usage.reasoning_tokens is None


def test_a_stream_takes_the_options_and_has_a_request_id_without_a_header(llm: Llm) -> None:
    with llm.stream(CITY, max_tokens=6, temperature=0, seed=1) as stream:
        text = "".join(stream)
    assert text and stream.request_id and stream.request_id.startswith("chatcmpl-")
    assert stream.usage is not None and stream.usage.cached_prompt_tokens is not None


def _one_pixel_png() -> str:
    """A real 1x1 PNG as a data URL, made here (no file needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def test_an_image_to_a_server_without_vision_fails_at_once_saying_why(llamacpp_server: Any) -> None:
    # Our server runs without a multimodal projector: it answers an image with a 500
    # every time. Retried, that took every attempt and its backoff; now it is one.
    config = llamacpp_server.config(max_tokens=4, retry=RetryConfig(max_attempts=3, initial_wait_seconds=1.0))
    image = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                          {"type": "image_url", "image_url": {"url": _one_pixel_png()}}]}]
    with create_llm_client(config) as client:
        with pytest.raises(ServerError, match="--mmproj") as raised:
            client.chat(image)
    assert raised.value.status_code == 500 and raised.value.attempts == 1
