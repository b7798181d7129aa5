"""Tools: plain Python functions (or OpenAI-format tool dicts) a model may call.

- :mod:`._schema`: :func:`function_tool`, a function's JSON schema from its type hints
  and docstring.
- :mod:`._call`: :func:`call_with_arguments`, calling it with the model's JSON arguments.
- :mod:`._normalize`: ``tools``/``tool_choice``/``parallel_tool_calls`` checked.
- :mod:`._messages`: assistant ``tool_calls`` and tool results checked (no orphans).
- :mod:`._loop`: :func:`run_tools`, the synchronous tool loop (``Llm.run_tools``).

The call a model asks for is a :class:`~cowork_llm.results.ToolCall`.
"""

from ..results import ToolCall
from ._call import ToolArgumentError, call_with_arguments
from ._loop import ToolOutcome, ToolRun, ToolStep, run_tools
from ._schema import function_tool, parameters_schema

__all__ = ["call_with_arguments", "function_tool", "parameters_schema", "run_tools", "ToolArgumentError",
           "ToolCall", "ToolOutcome", "ToolRun", "ToolStep"]
