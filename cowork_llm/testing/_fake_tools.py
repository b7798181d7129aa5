"""FakeLlmServer's tool-call answers, in both wire formats, whole and streamed.

A ``reply`` callable answers with tool calls by returning a
:class:`~cowork_llm.results.ToolCall` or a list of them (:func:`tool_call` builds one);
an empty ``id`` gets one made up (``call_fake…`` / ``toolu_fake…``). Streams split each
call's arguments into pieces, as the real APIs do (OpenAI ``delta.tool_calls[i].function
.arguments``, Anthropic ``input_json_delta``), so clients must assemble them.
"""

import json
import time
from typing import Any, Dict, List, Sequence, Tuple

from ..results import ToolCall
from ._echo import estimate_tokens

__all__ = ["tool_call", "as_tool_calls", "openai_tool_completion", "openai_tool_stream",
           "anthropic_tool_message", "anthropic_tool_stream", "check_openai_tools", "check_anthropic_tools"]


def tool_call(name: str, **arguments: Any) -> ToolCall:
    """A tool call for a fake's script: ``tool_call("get_weather", city="Oslo")``."""
    return ToolCall(id="", name=name, arguments=dict(arguments), raw_arguments=json.dumps(arguments))


def as_tool_calls(reply: Any, prefix: str, number: int) -> List[ToolCall]:
    """``reply`` as a list of tool calls, each with an id (made up from ``prefix`` and
    ``number`` where it has none); [] when ``reply`` is not tool calls."""
    calls = [reply] if isinstance(reply, ToolCall) else reply
    if not isinstance(calls, (list, tuple)) or not calls or not all(isinstance(c, ToolCall) for c in calls):
        return []
    return [c if c.id else ToolCall(f"{prefix}{number:06d}_{i}", c.name, c.arguments, c.raw_arguments)
            for i, c in enumerate(calls)]


def _arguments(call: ToolCall) -> str:
    return call.raw_arguments or json.dumps(call.arguments)


def _pieces(text: str, parts: int = 3) -> List[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _completion_tokens(calls: Sequence[ToolCall]) -> int:
    return sum(estimate_tokens(c.name + _arguments(c)) for c in calls)


def openai_tool_completion(rid: str, model: str, calls: Sequence[ToolCall],
                           prompt_tokens: int) -> Dict[str, Any]:
    """A chat.completion whose message holds ``tool_calls`` (content null,
    finish_reason ``tool_calls``)."""
    completion = _completion_tokens(calls)
    message = {"role": "assistant", "content": None, "refusal": None,
               "tool_calls": [{"id": c.id, "type": "function",
                               "function": {"name": c.name, "arguments": _arguments(c)}} for c in calls]}
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}],
            "system_fingerprint": "fp_fake",
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}}


def openai_tool_stream(rid: str, model: str, calls: Sequence[ToolCall], prompt_tokens: int,
                       include_usage: bool, sse: Any) -> List[bytes]:
    """chat.completion.chunk events: the role, then per call its id and name, then its
    arguments in pieces; the finish chunk; usage when asked; ``[DONE]``."""
    created = int(time.time())

    def chunk(delta: Dict[str, Any], finish_reason: Any = None) -> bytes:
        body: Dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created,
                                "model": model, "system_fingerprint": "fp_fake",
                                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]}
        if include_usage:
            body["usage"] = None
        return bytes(sse(body))

    events = [chunk({"role": "assistant", "content": None, "refusal": None})]
    for i, call in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                   for piece in _pieces(_arguments(call)) if piece]
    events.append(chunk({}, "tool_calls"))
    if include_usage:
        completion = _completion_tokens(calls)
        events.append(sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "fp_fake", "choices": [],
                           "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                     "total_tokens": prompt_tokens + completion}}))
    events.append(sse("[DONE]"))
    return events


def anthropic_tool_message(rid: str, model: str, calls: Sequence[ToolCall],
                           input_tokens: int) -> Dict[str, Any]:
    """A Messages API answer of ``tool_use`` blocks (stop_reason ``tool_use``)."""
    return {"id": rid, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                        for c in calls],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": _completion_tokens(calls)}}


def anthropic_tool_stream(rid: str, model: str, calls: Sequence[ToolCall], input_tokens: int,
                          sse: Any) -> List[bytes]:
    """message_start; per call content_block_start (tool_use, empty input), its
    ``input_json_delta`` pieces and content_block_stop; message_delta; message_stop."""
    start = anthropic_tool_message(rid, model, [], input_tokens)
    start.update(content=[], stop_reason=None)
    start["usage"]["output_tokens"] = 1
    events = [sse({"type": "message_start", "message": start}, "message_start")]
    for i, call in enumerate(calls):
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append(sse({"type": "content_block_start", "index": i, "content_block": block},
                          "content_block_start"))
        events += [sse({"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
                   for piece in _pieces(json.dumps(call.arguments)) if piece]
        events.append(sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events += [
        sse({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
             "usage": {"output_tokens": _completion_tokens(calls)}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


# --- what a request with tools must look like (as the real APIs refuse it) ----------------


def check_openai_tools(body: Dict[str, Any], messages: List[Dict[str, Any]],
                       problem: Any) -> Tuple[str, ...]:
    """The tool names of a chat-completions request, after OpenAI's checks: ``tools``
    are function tools, every tool message answers a call of an earlier assistant
    message. ``problem(message)`` makes the 400 to raise."""
    names = []
    for i, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function" or not isinstance(
                function.get("name"), str):
            raise problem(f"Invalid value for 'tools[{i}]': expected {{'type': 'function', 'function': "
                          "{'name': ..., 'parameters': {...}}}.")
        names.append(function["name"])
    made: set = set()
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                made.add(call.get("id") if isinstance(call, dict) else None)
        elif message.get("role") == "tool" and message.get("tool_call_id") not in made:
            raise problem(f"Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                          f"message with 'tool_calls' (messages.[{i}]).")
    if body.get("tool_choice") is not None and not names:
        raise problem("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                      "specified.")
    return tuple(names)


def check_anthropic_tools(body: Dict[str, Any], messages: List[Dict[str, Any]],
                          problem: Any) -> Tuple[str, ...]:
    """The tool names of a Messages API request, after Anthropic's checks: ``tools``
    have a name and an ``input_schema``; each ``tool_result`` answers a ``tool_use`` of
    the assistant turn right before."""
    names = []
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not isinstance(
                tool.get("input_schema"), dict):
            raise problem(f"tools.{i}: Input should have a name and an input_schema object.")
        names.append(tool["name"])
    previous_uses: set = set()
    for i, message in enumerate(messages):
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        results = [b.get("tool_use_id") for b in blocks
                   if isinstance(b, dict) and b.get("type") == "tool_result"]
        unknown = [r for r in results if r not in previous_uses]
        if unknown:
            raise problem(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                          f"{unknown[0]}. Each `tool_result` block must have a corresponding `tool_use` "
                          "block in the previous message.")
        if message.get("role") == "assistant":
            previous_uses = {b.get("id") for b in blocks
                             if isinstance(b, dict) and b.get("type") == "tool_use"}
    return tuple(names)
