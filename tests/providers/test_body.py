"""Bounded reading (providers/_body.py) and bounded SSE lines (providers/_sse.py), unit by
unit; the same against a raw-socket server is tests/reliability/test_hostile_server.py."""

import gzip
import zlib

import pytest
import requests
import responses

from cowork_llm.providers import _body, _sse

URL = "http://127.0.0.1:9/body"
TEXT = b'{"hello": "' + b"w\xc3\xb6rld " * 5000 + b'"}'


def fetch(body, encoding=None):
    with responses.RequestsMock() as mock:
        headers = {"Content-Encoding": encoding} if encoding else {}
        mock.get(URL, body=body, headers=headers, auto_calculate_content_length=True)
        return requests.get(URL, stream=True, headers={"Accept-Encoding": "gzip, deflate"})


@pytest.mark.parametrize("encoding, packed", [
    (None, TEXT),
    ("gzip", gzip.compress(TEXT)),
    ("deflate", zlib.compress(TEXT)),  # zlib-wrapped, as the standard says
    ("deflate", zlib.compress(TEXT)[2:-4]),  # raw deflate, as some servers send
])
def test_each_encoding_decodes_to_the_body(encoding, packed):
    response = fetch(packed, encoding)
    assert _body.read_body(response, 1 << 20) == TEXT
    assert response.content == TEXT  # requests reads the stored body, not the drained stream


def test_the_cap_counts_decoded_bytes():
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB in about 8 KiB
    assert len(bomb) < 64 * 1024
    with pytest.raises(_body.BodyTooLarge) as caught:
        _body.read_body(fetch(bomb, "gzip"), 1 << 20)
    assert caught.value.limit == 1 << 20


def test_an_error_body_is_cut_not_refused():
    response = fetch(b"x" * 200_000)
    assert _body.read_body(response, 65536, truncate=True) == b"x" * 65536


def test_an_encoding_we_did_not_ask_for_is_refused():
    with pytest.raises(_body.UnsupportedEncoding, match="'br'"):
        _body.read_body(fetch(b"\x0b\x02\x80", "br"), 1 << 20)


def test_a_line_longer_than_the_cap_fails_however_it_is_split():
    chunks = [b"data: " + b"x" * 1000] * 5 + [b"\n\n"]
    with pytest.raises(_sse.LineTooLong) as caught:
        list(_sse.iter_lines(iter(chunks), max_line=4096))
    assert caught.value.limit == 4096
    assert list(_sse.iter_lines(iter(chunks), max_line=8192)) == [b"".join(chunks[:5]).decode(), ""]


def test_lines_must_be_utf8():
    with pytest.raises(UnicodeDecodeError):
        list(_sse.iter_lines(iter([b"data: fi\xff\xfene\n"])))
