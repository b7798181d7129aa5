"""Test doubles for code that uses cowork_llm — ours, our examples', and yours.

- :class:`MockLlm`: an in-process :class:`~cowork_llm.llm.Llm` answering from a script,
  a callable, or an echo; records every call. No network.
- :func:`tool_call`: a scripted tool call, for either of them (``MockLlm([tool_call(
  "get_weather", city="Oslo"), "sunny"])``, or returned by a FakeLlmServer ``reply``).
- :class:`FakeLlmServer`: a real HTTP server on 127.0.0.1 speaking the OpenAI and
  Anthropic APIs (streaming included), with key checks, a record of every request and
  fault injection (error statuses with Retry-After, delays, dropped connections,
  malformed JSON, empty choices, quota errors, streams cut short), and a provider's
  rate limits (:class:`Quota`: requests/tokens per minute, rate-limit headers, 429s).

Example, a test of code that calls an LLM through the real client stack::

    from cowork_llm import create_llm_client
    from cowork_llm.testing import FakeLlmServer

    def test_summary_retries_a_503():
        with FakeLlmServer() as server:
            server.fail_next(status=503)
            llm = create_llm_client(server.config())
            assert llm.generate_content("hello") == "echo: hello"
            assert server.request_count == 2
"""

from ._echo import echo_reply, estimate_tokens
from ._fake_record import RecordedRequest
from ._fake_tools import tool_call
from .fake_faults import FAULT_KINDS, Fault
from .fake_quota import Quota
from .fake_server import FakeLlmServer
from .mock import MockCall, MockLlm

__all__ = [
    "echo_reply",
    "estimate_tokens",
    "FakeLlmServer",
    "Fault",
    "FAULT_KINDS",
    "MockCall",
    "MockLlm",
    "Quota",
    "RecordedRequest",
    "tool_call",
]
