"""Usage and cost through the client: totals under many threads, cost arithmetic, the
INFO line per call, ChatResult timing, and `cowork-llm ask --usage`."""

import logging
import threading
import time

import pytest

from cowork_llm import create_llm_client
from cowork_llm.cli import main
from cowork_llm.config import ModelPrice
from cowork_llm.errors import BadRequestError
from cowork_llm.llm import prompt_hash
from cowork_llm.testing import FakeLlmServer
from cowork_llm.usage import call_cost

KEY = "sk-usage-SECRET-0123456789abcdef"
PRICE = ModelPrice(input_per_million=2.5, output_per_million=10.0)


@pytest.fixture
def server():
    with FakeLlmServer(api_key=KEY) as srv:
        yield srv


def ask(text):
    return [{"role": "user", "content": text}]


def test_totals_under_8_threads_equal_the_sum_of_the_parts(server):
    server.fail_next(500, times=3)  # retried: three extra attempts
    server.fail_next(400)  # not retried: one failed call
    client = create_llm_client(server.config(max_concurrent=3, pricing={"fake-model": PRICE}))
    results, errors, lock = [], [], threading.Lock()

    def worker(n):
        for i in range(5):
            try:
                result = client.chat(ask(f"thread {n} question {i}" + " word" * (n + i)))
            except BadRequestError as error:
                with lock:
                    errors.append(error)
            else:
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    client.close()

    total = client.usage().total
    assert len(results) == 39 and len(errors) == 1
    assert total.requests == 40 and total.failures == 1 and total.cached_hits == 0
    assert total.retries == 3
    assert total.http_attempts == len(server.chat_requests) == 43
    assert total.prompt_tokens == sum(r.usage.prompt_tokens for r in results)
    assert total.completion_tokens == sum(r.usage.completion_tokens for r in results)
    assert total.cost == pytest.approx(sum(call_cost(PRICE, r.usage) for r in results))
    # The failed call's wait is counted too, so the total is at least the successes' sum.
    assert total.waited_seconds >= sum(r.waited_seconds for r in results) - 1e-9
    assert list(client.usage().models) == ["fake-model"]


def test_cost_is_tokens_times_the_configured_price(server):
    price = ModelPrice(input_per_million=3.0, output_per_million=15.0)
    with create_llm_client(server.config(pricing={"fake-model": price})) as client:
        result = client.chat(ask("what does this cost?"))
        snapshot = client.usage()
    usage = result.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    expected = (usage.prompt_tokens * 3.0 + usage.completion_tokens * 15.0) / 1_000_000
    assert snapshot.total.cost == pytest.approx(expected)
    assert snapshot.models["fake-model"].cost == pytest.approx(expected)
    assert snapshot.cost_complete


def test_an_unpriced_model_has_no_cost_not_zero(server, caplog):
    caplog.set_level(logging.INFO, logger="cowork_llm")
    with create_llm_client(server.config()) as client:
        client.chat(ask("free?"))
        snapshot = client.usage()
    assert snapshot.total.cost is None and snapshot.unpriced_models == ("fake-model",)
    assert snapshot.total.prompt_tokens > 0
    assert "unpriced" in call_lines(caplog)[0].getMessage()


def test_a_failed_call_counts_as_a_failure_without_tokens(server):
    server.fail_next(400)
    with create_llm_client(server.config(pricing={"fake-model": PRICE})) as client:
        with pytest.raises(BadRequestError):
            client.chat(ask("rejected"))
        total = client.usage().total
    assert (total.requests, total.failures, total.retries) == (1, 1, 0)
    assert total.prompt_tokens == 0 and total.cost == 0.0


def call_lines(caplog):
    return [r for r in caplog.records
            if r.name == "cowork_llm.client._accounting" and r.levelno == logging.INFO]


def test_one_info_line_per_call_with_the_fields_and_neither_key_nor_prompt(server, caplog):
    caplog.set_level(logging.DEBUG, logger="cowork_llm")
    prompt = "my private question about quarterly numbers"
    with create_llm_client(server.config(pricing={"fake-model": PRICE})) as client:
        result = client.chat(ask(prompt))
        client.chat(ask(prompt + " again"))
    lines = call_lines(caplog)
    assert len(lines) == 2
    line = lines[0].getMessage()
    usage = result.usage
    assert line.startswith("fake-model: ")
    assert f"{usage.prompt_tokens}+{usage.completion_tokens} tokens" in line
    assert "latency " in line and "waited " in line and "attempts 1" in line
    assert f"cost {call_cost(PRICE, usage):.6f}" in line
    assert f"prompt={prompt_hash(ask(prompt))}" in line
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in everything and KEY[-8:] not in everything
    assert "quarterly" not in everything


def test_result_says_when_its_request_started_and_how_long_it_waited(server):
    with create_llm_client(server.config(min_interval_seconds=0.3)) as client:
        first = client.chat(ask("first"))
        second_asked = time.time()
        second = client.chat(ask("second"))
    arrivals = [r.arrival_wall for r in server.chat_requests]
    assert first.waited_seconds < 0.25  # the first call does not wait for the interval
    # The second waits out what is left of the 0.3 s after the first one's start.
    assert second.waited_seconds >= first.started_at + 0.3 - second_asked - 0.01
    assert second.waited_seconds > 0
    for result, arrived in zip((first, second), arrivals, strict=True):
        # granted, then sent: the server sees it shortly after (generous for a busy machine)
        assert result.started_at - 0.05 <= arrived < result.started_at + 2.0
    assert second.started_at - first.started_at >= 0.29
    assert not first.cached and not second.cached


def test_ask_usage_prints_the_totals_on_stderr_and_only_the_answer_on_stdout(server, monkeypatch,
                                                                            capsys):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    code = main(["ask", "--usage", "Name a river"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "echo: Name a river\n"
    assert err.startswith("usage: 1 request (0 cached, 0 failed, 0 retries), ")
    assert "cost unknown (no price configured)" in err
    assert KEY not in out + err


def test_ask_without_usage_prints_no_usage(server, monkeypatch, capsys):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    assert main(["ask", "Name a river"]) == 0
    assert "usage:" not in capsys.readouterr().err
