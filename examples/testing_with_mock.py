"""How to test your own code that calls an LLM, without a real one.

    python examples/testing_with_mock.py      # runs the tests below and says how they went
    pytest examples/testing_with_mock.py      # the same tests, under pytest

``summarise`` stands for your code: it takes any ``Llm`` (what create_llm_client returns)
and has its own rules (a system prompt, a fallback when the LLM fails). Two test doubles:

- ``MockLlm``: in-process, no network, instant. Script the replies (or an error), then
  assert on what your code sent (``calls``, ``prompts``). Use it for your own logic.
- ``FakeLlmServer``: a real HTTP server on 127.0.0.1 speaking the OpenAI API. Point the
  real client at it (``create_llm_client(server.config())``) and inject faults
  (``fail_next(status=503)``) to see the whole stack: retries, limiter, HTTP, parsing.
"""

import sys

from cowork_llm import Llm, LlmError, ServerError, create_llm_client
from cowork_llm.testing import FakeLlmServer, MockLlm

SYSTEM_PROMPT = "Summarise the user's text in one sentence."


def summarise(llm: Llm, text: str) -> str:
    """Your code under test: a one-sentence summary, or the text's first sentence when
    the LLM fails."""
    try:
        return llm.generate_content(text, system_prompt=SYSTEM_PROMPT).strip()
    except LlmError:
        return text.split(". ")[0].rstrip(".") + "."


TEXT = "Tide pools form where the sea retreats. They shelter crabs and anemones. Visit at low tide."


# --- with MockLlm: your logic, no network ---------------------------------------------------


def test_summarise_returns_the_llm_answer_and_sends_the_system_prompt() -> None:
    llm = MockLlm(["  Tide pools are rocky habitats left by the sea.  "])  # a script: one reply
    assert summarise(llm, TEXT) == "Tide pools are rocky habitats left by the sea."
    assert llm.call_count == 1
    assert llm.last_call.messages == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": TEXT},
    ]


def test_summarise_falls_back_to_the_first_sentence_when_the_llm_fails() -> None:
    llm = MockLlm()  # echoes by default
    llm.fail_next(ServerError("the provider is down", status_code=503))
    assert summarise(llm, TEXT) == "Tide pools form where the sea retreats."
    assert summarise(llm, TEXT) == f"echo: {TEXT}"  # the error was used up; echo again
    assert llm.prompts == [TEXT, TEXT]


# --- with FakeLlmServer: the real client stack over HTTP -------------------------------------


def test_a_503_is_retried_by_the_client_before_summarise_sees_it() -> None:
    with FakeLlmServer() as server:
        server.fail_next(status=503)  # the first request fails, the retry succeeds
        with create_llm_client(server.config()) as llm:
            assert summarise(llm, TEXT) == f"echo: {TEXT}"
        first, second = server.chat_requests
        assert first.messages == second.messages  # the same request, sent again
        assert second.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}


def test_summarise_falls_back_when_every_attempt_fails() -> None:
    with FakeLlmServer() as server:
        server.fail_next(status=503, times=2)
        with create_llm_client(server.config(max_attempts=2)) as llm:
            assert summarise(llm, TEXT) == "Tide pools form where the sea retreats."
        assert len(server.chat_requests) == 2  # both attempts reached the server


if __name__ == "__main__":
    tests = [(name, test) for name, test in list(globals().items())
             if name.startswith("test_") and callable(test)]
    failed = 0
    for name, test in tests:
        try:
            test()
        except AssertionError as error:
            failed += 1
            print(f"FAIL {name}: {error!r}")
        else:
            print(f"ok   {name}")
    print(f"{len(tests) - failed} of {len(tests)} passed")
    sys.exit(1 if failed else 0)
