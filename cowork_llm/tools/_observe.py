"""Each tool run by :func:`~cowork_llm.tools.run_tools` told to the client's observers
(:mod:`cowork_llm.telemetry`): an ``execute_tool NAME`` span with the call's id, and its
error when the tool failed. A client without observers (or an Llm that has none) costs a
getattr per tool call.
"""

from typing import Any, Callable, List

__all__ = ["observed_tool_call", "ToolCallFailed"]


class ToolCallFailed(Exception):
    """What observers are told when a tool's error went back to the model (the tool
    raised, was unknown, or got arguments that do not fit); never raised to callers."""


def observed_tool_call(llm: Any, call: Any, run: Callable[[], Any]) -> Any:
    """``run()`` (which returns a ToolOutcome), reported to ``llm``'s observers when it
    has any. Raises what ``run`` raises."""
    start = getattr(llm, "start_observations", None)
    observations: List[Any] = start("execute_tool", None, call.name, {"tool_call_id": call.id}) \
        if callable(start) else []
    if not observations:
        return run()
    try:
        outcome = run()
    except BaseException as error:
        for observation in observations:
            observation.failed(error)
        raise
    for observation in observations:
        if outcome.error is not None:
            observation.failed(ToolCallFailed(outcome.error))
        else:
            observation.succeeded(outcome)
    return outcome
