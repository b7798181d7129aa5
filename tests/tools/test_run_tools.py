"""llm.run_tools(): the synchronous tool loop — steps, transcript, errors fed back to the
model, on_tool_error="raise", max_steps, unknown tools, forced tool_choice only on the
first step — with MockLlm (offline) and through the limiter against FakeLlmServer."""

import datetime
import decimal
import logging
import time

import pytest

from cowork_llm import create_llm_client
from cowork_llm.client import RateLimitedLlm
from cowork_llm.errors import MaxStepsError, ToolExecutionError
from cowork_llm.rate_limiter import RateLimiter
from cowork_llm.telemetry import CallObservation, Observer
from cowork_llm.testing import FakeLlmServer, MockLlm, tool_call
from cowork_llm.tools import run_tools

ASK = [{"role": "user", "content": "Weather in Oslo, then save a note."}]
SAVED = []


def get_weather(city: str) -> dict:
    """The weather for a city.

    Args:
        city: the city name
    """
    if city == "Atlantis":
        raise LookupError("no station in Atlantis")
    return {"city": city, "sky": "sunny", "celsius": 14}


def save_doc(title: str, body: str) -> str:
    """Save a document."""
    SAVED.append((title, body))
    return f"saved {title}"


def test_a_two_tool_agent_runs_to_its_final_answer_with_mock_llm():
    SAVED.clear()
    llm = MockLlm([tool_call("get_weather", city="Oslo"),
                   tool_call("save_doc", title="Oslo", body="sunny, 14 C"),
                   "Saved the forecast for Oslo."])
    run = llm.run_tools(ASK, [get_weather, save_doc])
    assert run.content == "Saved the forecast for Oslo." and run.result.tool_calls == ()
    assert SAVED == [("Oslo", "sunny, 14 C")]
    roles = [m["role"] for m in run.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert run.messages[2]["content"] == '{"city": "Oslo", "sky": "sunny", "celsius": 14}'  # JSON-encoded
    assert run.messages[4]["content"] == "saved Oslo"  # a string goes as it is
    assert run.messages[2]["tool_call_id"] == run.messages[1]["tool_calls"][0]["id"]
    assert [len(s.outcomes) for s in run.steps] == [1, 1, 0]
    assert run.steps[0].outcomes[0].error is None and run.steps[0].calls[0].name == "get_weather"
    assert run.usage is not None and run.usage.prompt_tokens > 0
    # The transcript is valid input: the conversation can go on.
    llm.enqueue("You're welcome.")
    assert llm.chat(run.messages + [{"role": "user", "content": "Thanks"}]).content == "You're welcome."
    # Every step saw the whole transcript so far, and the tools.
    assert [len(c.messages) for c in llm.calls[:3]] == [1, 3, 5]
    assert all(len(c.options["tools"]) == 2 for c in llm.calls[:3])


def test_a_tool_that_raises_is_answered_with_its_error_and_logged(caplog):
    llm = MockLlm([tool_call("get_weather", city="Atlantis"), "Atlantis has no station."])
    with caplog.at_level(logging.WARNING, logger="cowork_llm"):
        run = llm.run_tools(ASK, [get_weather])
    tool_message = run.messages[2]
    assert tool_message["is_error"] is True
    assert tool_message["content"] == "Error: LookupError: no station in Atlantis"
    assert run.steps[0].outcomes[0].error == "LookupError: no station in Atlantis"
    (record,) = [r for r in caplog.records if r.name == "cowork_llm.tools._loop"]
    assert record.getMessage() == "tool get_weather raised LookupError; the error goes back to the model"
    assert not record.exc_info  # the traceback only at DEBUG (below)
    assert run.content == "Atlantis has no station."


def test_at_debug_level_the_warning_carries_the_tools_traceback(caplog):
    llm = MockLlm([tool_call("get_weather", city="Atlantis"), "Atlantis has no station."])
    with caplog.at_level(logging.DEBUG, logger="cowork_llm"):
        llm.run_tools(ASK, [get_weather])
    (record,) = [r for r in caplog.records if r.name == "cowork_llm.tools._loop"]
    assert record.levelno == logging.WARNING and record.exc_info[0] is LookupError


def test_the_loop_called_as_a_function_also_sends_errors_back_by_default():
    run = run_tools(MockLlm([tool_call("get_weather", city="Atlantis"), "No station."]), ASK, [get_weather])
    assert run.messages[2]["content"] == "Error: LookupError: no station in Atlantis"


def test_results_keep_their_non_ascii_text():
    run = MockLlm([tool_call("get_weather", city="Zürich"), "Sunny."]).run_tools(ASK, [get_weather])
    assert run.messages[2]["content"] == '{"city": "Zürich", "sky": "sunny", "celsius": 14}'


def test_on_tool_error_raise_stops_with_the_tools_exception_as_cause():
    llm = MockLlm([tool_call("get_weather", city="Atlantis")])
    with pytest.raises(ToolExecutionError, match="tool get_weather raised LookupError") as caught:
        llm.run_tools(ASK, [get_weather], on_tool_error="raise")
    assert isinstance(caught.value.__cause__, LookupError)
    assert caught.value.tool_name == "get_weather"
    assert [m["role"] for m in caught.value.messages] == ["user", "assistant"]


def test_an_unknown_tool_or_bad_arguments_get_an_error_result_not_a_crash():
    llm = MockLlm([[tool_call("get_forecast", city="Oslo"), tool_call("get_weather", town="Oslo")],
                   "Sorry."])
    run = llm.run_tools(ASK, [get_weather, save_doc])
    first, second = run.steps[0].outcomes
    assert first.output == ("Error: there is no tool named 'get_forecast'; "
                            "the tools are: get_weather, save_doc")
    assert "missing a required argument: 'city'" in second.output
    assert run.messages[2]["is_error"] and run.messages[3]["is_error"]
    assert run.content == "Sorry."


def test_max_steps_names_the_tools_of_the_last_step_and_what_to_do():
    llm = MockLlm([tool_call("get_weather", city="Oslo"), tool_call("save_doc", title="t", body="b"),
                   [tool_call("get_weather", city="Bergen"), tool_call("save_doc", title="u", body="c")]])
    with pytest.raises(MaxStepsError) as caught:
        llm.run_tools(ASK, [get_weather, save_doc], max_steps=3)
    assert str(caught.value) == ("the model still called tools after max_steps=3 steps (last: get_weather, "
                                 "save_doc); raise max_steps or continue from this error's messages")


def test_each_step_says_how_long_it_took_the_final_one_too():
    run = MockLlm([tool_call("get_weather", city="Oslo"), "Sunny."], latency_seconds=0.05).run_tools(
        ASK, [get_weather])
    assert [0.05 <= step.seconds < 5 for step in run.steps] == [True, True]
    assert [step.index for step in run.steps] == [1, 2]


def test_max_steps_raises_with_the_transcript_so_far():
    llm = MockLlm([tool_call("get_weather", city="Oslo")] * 3)
    with pytest.raises(MaxStepsError, match="after max_steps=2 steps \\(last: get_weather\\)") as caught:
        llm.run_tools(ASK, [get_weather], max_steps=2)
    assert len(caught.value.steps) == 2
    assert [m["role"] for m in caught.value.messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert llm.call_count == 2


def test_a_forced_tool_choice_applies_to_the_first_step_only():
    llm = MockLlm([tool_call("get_weather", city="Oslo"), "Done."])
    llm.run_tools(ASK, [get_weather], tool_choice="required", parallel_tool_calls=False, max_tokens=50)
    assert [c.options["tool_choice"] for c in llm.calls] == ["required", "auto"]
    assert all(c.options["parallel_tool_calls"] is False and c.options["max_tokens"] == 50 for c in llm.calls)


@pytest.mark.parametrize("kwargs, words", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]},
     "each must be a Python function; f is a dict"),
    ({"tools": [{"type": "function", "function": {"name": "f"}},
               {"type": "function", "function": {"name": "g"}}, get_weather]}, "f, g are a dict"),
    ({"tools": [get_weather], "max_steps": 0}, "max_steps must be an integer of at least 1"),
    ({"tools": [get_weather], "max_steps": True}, "max_steps must be an integer of at least 1, got True"),
    ({"tools": [get_weather], "max_steps": "3"}, "max_steps must be an integer of at least 1, got '3'"),
    ({"tools": [get_weather], "on_tool_error": "ignore"}, "on_tool_error must be one of return, raise"),
])
def test_bad_arguments_are_value_errors_before_any_call(kwargs, words):
    llm = MockLlm(["never"])
    options = dict(kwargs)  # the parameters are shared by every run of this test in a process
    tools = options.pop("tools")
    with pytest.raises(ValueError, match=words):
        llm.run_tools(ASK, tools, **options)
    assert llm.call_count == 0


def test_each_step_goes_through_the_limiter_and_is_counted():
    def script(messages):
        if any(m.get("role") == "tool" for m in messages):
            return "Saved."
        return tool_call("save_doc", title="t", body="b")

    with FakeLlmServer(reply=script) as server:
        with create_llm_client(server.config(min_interval_seconds=0.2)) as llm:
            run = llm.run_tools(ASK, [save_doc])
            usage = llm.usage()
        arrived = len(server.chat_requests)
    assert run.content == "Saved." and len(run.steps) == 2 and arrived == 2
    # Each step took its own slot: the second was granted an interval after the first
    # (measured at admission; arrival at the server adds the machine's scheduling noise).
    first, second = (step.result.started_at for step in run.steps)
    assert second - first >= 0.2 - 0.005
    assert usage.total.requests == 2


def test_run_tools_with_a_mock_behind_the_rate_limited_client():
    llm = RateLimitedLlm(MockLlm([tool_call("get_weather", city="Oslo"), "Sunny."]))
    assert llm.run_tools(ASK, [get_weather]).content == "Sunny."
    assert llm.usage().total.requests == 2


@pytest.mark.parametrize("as_function", [False, True])
def test_by_default_the_loop_gives_up_after_eight_model_calls(as_function):
    llm = MockLlm([tool_call("get_weather", city="Oslo")] * 9)
    with pytest.raises(MaxStepsError, match="after max_steps=8 steps"):
        if as_function:
            run_tools(llm, ASK, [get_weather])
        else:
            llm.run_tools(ASK, [get_weather])
    assert llm.call_count == 8


def test_max_steps_one_is_enough_for_a_direct_answer():
    run = MockLlm(["No tools needed."]).run_tools(ASK, [get_weather], max_steps=1)
    assert run.content == "No tools needed." and len(run.steps) == 1


def test_an_empty_final_answer_leaves_a_transcript_that_can_go_on():
    llm = MockLlm([tool_call("get_weather", city="Oslo"), ""])
    run = llm.run_tools(ASK, [get_weather])
    assert run.content == "" and len(run.steps) == 2
    assert [m["role"] for m in run.messages] == ["user", "assistant", "tool"]  # no empty assistant message
    llm.enqueue("Sunny.")
    assert llm.chat(run.messages + [{"role": "user", "content": "So?"}]).content == "Sunny."


def clear_cache(key: str) -> str:
    """Clear one cache entry."""
    return ""


def test_a_tool_that_returns_an_empty_string_is_answered_with_it_as_json():
    llm = MockLlm([tool_call("clear_cache", key="k"), "Cleared."])
    run = llm.run_tools(ASK, [clear_cache])
    assert run.content == "Cleared." and run.messages[2]["content"] == '""'
    assert run.steps[0].outcomes[0].error is None


class Recorder(Observer):
    """A user's own observer: what it is told about each call."""

    def __init__(self):
        self.seen = []

    def start_call(self, call):
        seen = self.seen

        class Watch(CallObservation):
            def succeeded(self, result):  # a ChatResult, or a tool's ToolOutcome
                seen.append((call.operation, call.model, call.options.get("tool_call_id"),
                             getattr(result, "output", "ok")))

            def failed(self, error):
                seen.append((call.operation, call.model, call.options.get("tool_call_id"),
                             f"{type(error).__name__}: {error}"))

        return Watch()


def test_an_observer_is_told_of_each_tool_run_and_of_the_error_sent_back():
    recorder = Recorder()
    limiter = RateLimiter()
    script = [[tool_call("get_weather", city="Oslo"), tool_call("get_weather", city="Atlantis")], "Done."]
    llm = RateLimitedLlm(MockLlm(script), limiter, observers=[recorder])
    run = llm.run_tools(ASK, [get_weather])
    limiter.close()
    assert run.content == "Done."
    tools = [entry for entry in recorder.seen if entry[0] != "chat"]
    first, second = (call.id for call in run.steps[0].calls)
    assert tools == [("execute_tool", "get_weather", first,
                      '{"city": "Oslo", "sky": "sunny", "celsius": 14}'),
                     ("execute_tool", "get_weather", second,
                      "ToolCallFailed: LookupError: no station in Atlantis")]


def test_an_observer_is_told_of_the_error_that_stops_the_loop():
    recorder = Recorder()
    limiter = RateLimiter()
    llm = RateLimitedLlm(MockLlm([tool_call("get_weather", city="Atlantis")]), limiter, observers=[recorder])
    with pytest.raises(ToolExecutionError):
        llm.run_tools(ASK, [get_weather], on_tool_error="raise")
    limiter.close()
    assert recorder.seen[-1][0] == "execute_tool"
    assert recorder.seen[-1][-1] == ("ToolExecutionError: tool get_weather raised LookupError: "
                                     "no station in Atlantis")


def test_the_error_that_stops_the_loop_carries_the_steps_before_it():
    llm = MockLlm([tool_call("get_weather", city="Oslo"), tool_call("get_weather", city="Atlantis")])
    with pytest.raises(ToolExecutionError) as caught:
        llm.run_tools(ASK, [get_weather], on_tool_error="raise")
    (step,) = caught.value.steps
    assert step.outcomes[0].output == '{"city": "Oslo", "sky": "sunny", "celsius": 14}'


def slow_lookup(city: str) -> str:
    """Look a city up, slowly."""
    time.sleep(0.05)  # the tool's own work: what its outcome's seconds measure
    if city == "Atlantis":
        raise LookupError("no such city")
    return city


def test_each_tool_outcome_says_how_long_the_tool_took():
    llm = MockLlm([[tool_call("slow_lookup", city="Oslo"), tool_call("slow_lookup", city="Atlantis"),
                    tool_call("missing", city="Oslo")], "Done."])
    ok, failed, unknown = llm.run_tools(ASK, [slow_lookup]).steps[0].outcomes
    assert 0.05 <= ok.seconds < 5 and 0.05 <= failed.seconds < 5
    assert isinstance(unknown.seconds, float) and 0 < unknown.seconds < 5


def test_a_result_json_cannot_hold_is_sent_as_its_text():
    def when(city: str) -> dict:
        """When the next train leaves."""
        return {"city": city, "at": datetime.datetime(2026, 12, 1, 18, 30), "price": decimal.Decimal("9.50")}

    run = MockLlm([tool_call("when", city="Oslo"), "At half past six."]).run_tools(ASK, [when])
    assert run.messages[2]["content"] == '{"city": "Oslo", "at": "2026-12-01 18:30:00", "price": "9.50"}'
