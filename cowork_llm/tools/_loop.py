"""``run_tools``: the synchronous tool loop. Ask the model; run the tools it calls, in
order, in the calling thread; send their results back; until it answers without a call.

Each model step is one ``llm.chat()`` — through the client's limiter, retries and usage
accounting like any other call. A tool that raises is answered to the model with the
exception's text (marked as an error) and logged at WARNING, unless
``on_tool_error="raise"``. A call of a tool that does not exist, or with arguments that do
not fit the function, is answered with an error result too: the model can correct itself.
"""

import functools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import MaxStepsError, ToolExecutionError
from ..results import ChatResult, ToolCall, Usage
from ._call import ToolArgumentError, call_with_arguments
from ._normalize import normalize_tools
from ._observe import observed_tool_call

__all__ = ["run_tools", "ToolRun", "ToolStep", "ToolOutcome", "ON_TOOL_ERROR"]

logger = logging.getLogger(__name__)

ON_TOOL_ERROR = ("return", "raise")
# A forced choice ("required", or one named function) forces every step; after the first
# step it becomes "auto", or the model could never give its final answer.
_FORCING = ("required",)


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call and what came of it: ``output`` is the text sent back to the model;
    ``error`` is set (and ``output`` starts with ``"Error: "``) when the tool raised, was
    unknown or got arguments that do not fit."""

    call: ToolCall
    output: str
    error: Optional[str] = None
    seconds: float = 0.0


@dataclass(frozen=True)
class ToolStep:
    """One model call of the loop: its result, the tools it called (in order) and how
    long the step took, the tools included."""

    index: int
    result: ChatResult
    outcomes: Tuple[ToolOutcome, ...] = ()
    seconds: float = 0.0

    @property
    def calls(self) -> Tuple[ToolCall, ...]:
        return self.result.tool_calls

    @property
    def usage(self) -> Optional[Usage]:
        return self.result.usage


@dataclass(frozen=True)
class ToolRun:
    """What :func:`run_tools` returns: the final answer (a result without tool calls),
    the whole transcript (the final answer included, ready to continue; an empty final
    answer is left out, as neither API takes an empty assistant message) and the steps."""

    result: ChatResult
    messages: List[Dict[str, Any]]
    steps: Tuple[ToolStep, ...] = field(default=())

    @property
    def content(self) -> str:
        return self.result.content

    @property
    def usage(self) -> Optional[Usage]:
        """The tokens of every step together; None when a step's were not reported."""
        usages = [step.usage for step in self.steps]
        if not usages or any(u is None for u in usages):
            return None
        return Usage.of(sum(u.prompt_tokens for u in usages if u),
                        sum(u.completion_tokens for u in usages if u))


def run_tools(llm: Any, messages: Sequence[Any], tools: Sequence[Any], *, max_steps: int = 8,
              on_tool_error: str = "return", tool_choice: Any = None,
              parallel_tool_calls: Optional[bool] = None, **options: Any) -> ToolRun:
    """Run the tool loop on ``llm`` (any :class:`~cowork_llm.llm.Llm`; ``options`` go to
    every ``chat()``).

    Raises:
        ValueError: bad messages, tools or options (before any request); a tool given as
            a dict (the loop needs a function to run); ``max_steps`` below 1 or an
            unknown ``on_tool_error``.
        MaxStepsError: the model still called tools at step ``max_steps``; carries the
            transcript and steps.
        ToolExecutionError: a tool raised and ``on_tool_error="raise"``.
        LlmApiError: a model call failed (after its retries).
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer of at least 1, got {max_steps!r}")
    if on_tool_error not in ON_TOOL_ERROR:
        raise ValueError(f"on_tool_error must be one of {', '.join(ON_TOOL_ERROR)}, got {on_tool_error!r}")
    specs, functions = normalize_tools(tools)
    without_function = [s["function"]["name"] for s in specs if s["function"]["name"] not in functions]
    if without_function:
        raise ValueError(f"run_tools runs the tools itself, so each must be a Python function; "
                         f"{', '.join(without_function)} {'is' if len(without_function) == 1 else 'are'} "
                         "a dict (call chat(tools=...) to handle such calls yourself)")
    transcript: List[Dict[str, Any]] = [dict(m) for m in messages]
    steps: List[ToolStep] = []
    choice = tool_choice
    for index in range(1, max_steps + 1):
        started = time.monotonic()
        # The schemas, not the functions: built once, not again at every step.
        result: ChatResult = llm.chat(transcript, tools=list(specs), tool_choice=choice,
                                      parallel_tool_calls=parallel_tool_calls, **options)
        if not result.tool_calls:
            if result.content.strip():  # an empty answer: no API takes it in a transcript
                transcript.append(assistant_message(result))
            steps.append(ToolStep(index, result, (), time.monotonic() - started))
            return ToolRun(result, transcript, tuple(steps))
        transcript.append(assistant_message(result))
        outcomes = []
        for call in result.tool_calls:
            outcome = observed_tool_call(  # an execute_tool span when the client has observers
                llm, call, functools.partial(_run_one, call, functions, on_tool_error, transcript, steps))
            outcomes.append(outcome)
            transcript.append(tool_message(outcome))
        steps.append(ToolStep(index, result, tuple(outcomes), time.monotonic() - started))
        if choice in _FORCING or isinstance(choice, dict):
            choice = "auto"
    raise MaxStepsError(f"the model still called tools after max_steps={max_steps} steps "
                        f"(last: {', '.join(c.name for c in steps[-1].calls)}); raise max_steps or "
                        "continue from this error's messages", messages=transcript, steps=steps)


def _run_one(call: ToolCall, functions: Dict[str, Callable[..., Any]], on_tool_error: str,
             transcript: List[Dict[str, Any]], steps: List[ToolStep]) -> ToolOutcome:
    started = time.monotonic()
    function = functions.get(call.name)
    if function is None:
        error = f"there is no tool named {call.name!r}; the tools are: {', '.join(functions)}"
        return ToolOutcome(call, f"Error: {error}", error, time.monotonic() - started)
    try:
        value = call_with_arguments(function, call.arguments)
    except ToolArgumentError as problem:
        error = str(problem)
    except Exception as problem:  # the tool's own failure: the model is told, or the caller
        if on_tool_error == "raise":
            raise ToolExecutionError(f"tool {call.name} raised {type(problem).__name__}: {problem}",
                                     tool_name=call.name, messages=transcript, steps=steps) from problem
        error = f"{type(problem).__name__}: {problem}"
        logger.warning("tool %s raised %s; the error goes back to the model", call.name,
                       type(problem).__name__, exc_info=logger.isEnabledFor(logging.DEBUG))
    else:
        return ToolOutcome(call, _as_text(value), None, time.monotonic() - started)
    return ToolOutcome(call, f"Error: {error}", error, time.monotonic() - started)


def _as_text(value: Any) -> str:
    """A tool's return value as the tool message's content: strings as they are,
    anything else as JSON (objects JSON cannot hold, as their str). An empty or blank
    string goes as JSON too (``""``): a tool message must not be empty."""
    if isinstance(value, str) and value.strip():
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def assistant_message(result: ChatResult) -> Dict[str, Any]:
    """The assistant message of ``result`` for the transcript, its tool calls included
    (OpenAI's format; content None when the model only called tools)."""
    message: Dict[str, Any] = {"role": "assistant", "content": result.content or None}
    if result.tool_calls:
        message["tool_calls"] = [call.to_message() for call in result.tool_calls]
    return message


def tool_message(outcome: ToolOutcome) -> Dict[str, Any]:
    """The ``tool`` message answering one call."""
    message: Dict[str, Any] = {"role": "tool", "tool_call_id": outcome.call.id, "content": outcome.output}
    if outcome.error is not None:
        message["is_error"] = True
    return message
