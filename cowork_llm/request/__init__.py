"""What a caller asks: the vocabulary of a request, checked before anything is sent.

- :mod:`._messages`: the message format (OpenAI's chat format, every role, content parts
  and images, tool calls and results) and its checks.
- :mod:`._options`: :class:`ChatOptions`, the per-call options as one frozen value.
- :mod:`._structured`: ``response_format`` (JSON, JSON schema, a dataclass type) and the
  parsing of its answers into ``ChatResult.parsed``.
- :mod:`._embed_input`: the checks of ``embed()``'s arguments.

Every check raises ValueError naming the message index, option or field at fault.
"""

from ._messages import ROLES, Message, build_messages, validate_messages
from ._options import MAX_STOP_SEQUENCES, REASONING_EFFORTS, ChatOptions, check_options
from ._structured import ResponseFormat, check_response_format, parse_answer, schema_of_dataclass

__all__ = [
    "build_messages",
    "ChatOptions",
    "check_options",
    "check_response_format",
    "MAX_STOP_SEQUENCES",
    "Message",
    "parse_answer",
    "REASONING_EFFORTS",
    "ResponseFormat",
    "ROLES",
    "schema_of_dataclass",
    "validate_messages",
]
