"""Batch input: read and check every item before a single request is sent.

An item is ``{"id": ..., "prompt": ..., "system_prompt"?: ...}`` or
``{"id": ..., "messages": [...]}``, optionally with the chat options ``temperature``,
``max_tokens``, ``top_p``, ``stop``, ``seed``, ``response_format`` (a JSON object: a
dataclass cannot be written in JSON), ``reasoning_effort`` and ``extra_body``, checked as
``chat()`` checks them.

Ids are strings or integers and are compared **as text**: ``1`` and ``"1"`` are the same
id (a duplicate in the input, and the same item on resume), because spreadsheets and
scripts routinely turn one into the other. The output keeps each id exactly as the input
wrote it. Booleans, floats, null and empty strings are rejected as ids.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import BatchInputError
from ..llm import build_messages, check_temperature, validate_messages
from ..request._options import ChatOptions

__all__ = ["BatchItem", "InputProblem", "id_key", "read_batch_file", "check_items"]

ItemId = Union[str, int]
#: The chat options an item may carry besides temperature and max_tokens.
OPTION_KEYS = ("top_p", "stop", "seed", "response_format", "reasoning_effort", "extra_body")
ALLOWED_KEYS = ("id", "prompt", "system_prompt", "messages", "temperature", "max_tokens") + OPTION_KEYS


def id_key(value: Any) -> str:
    """The text an id is compared by. Raises ValueError for an unusable id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"'id' must be a string or an integer, got {json.dumps(value)[:40]}")
    if isinstance(value, str) and not value.strip():
        raise ValueError("'id' must not be empty")
    return str(value)


@dataclass(frozen=True)
class BatchItem:
    """One checked item: its id as the input wrote it, the messages to send, and its
    options (``options`` holds those of :data:`OPTION_KEYS` it set)."""

    id: ItemId
    messages: List[Dict[str, Any]] = field(repr=False)
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    line: Optional[int] = None
    options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        return id_key(self.id)


@dataclass(frozen=True)
class InputProblem:
    """Why one input line (or item, for items given as objects) cannot be used."""

    line: int
    message: str
    label: str = "line"

    def __str__(self) -> str:
        return f"{self.label} {self.line}: {self.message}"


def parse_item(obj: Any, line: int) -> BatchItem:
    """Check one decoded item. Raises ValueError saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError(f"must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(ALLOWED_KEYS))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ALLOWED_KEYS)}")
    if "id" not in obj:
        raise ValueError("missing 'id'")
    id_key(obj["id"])
    if "messages" in obj:
        if "prompt" in obj or "system_prompt" in obj:
            raise ValueError("give either 'messages' or 'prompt' (with 'system_prompt'), not both")
        messages = validate_messages(obj["messages"])
    elif "prompt" in obj:
        messages = build_messages(obj["prompt"], obj.get("system_prompt"))
    else:
        raise ValueError("missing 'prompt' (or 'messages')")
    temperature, max_tokens = obj.get("temperature"), obj.get("max_tokens")
    if temperature is not None and (isinstance(temperature, bool)
                                    or not isinstance(temperature, (int, float))):
        raise ValueError(f"'temperature' must be a number, got {json.dumps(temperature)[:40]}")
    if temperature is not None:
        check_temperature(temperature)  # NaN, inf, out of range: refused before any request
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise ValueError(f"'max_tokens' must be a positive integer, got {json.dumps(max_tokens)[:40]}")
    options = {name: obj[name] for name in OPTION_KEYS if obj.get(name) is not None}
    if isinstance(options.get("response_format"), type):  # not from JSON, but from Python
        raise ValueError("'response_format' must be a JSON object here (a dataclass cannot be written to "
                         "the journal); pass its schema as {'type': 'json_schema', ...}")
    ChatOptions.of(**options)  # each checked as chat() checks it, before anything is sent
    return BatchItem(obj["id"], messages, temperature, max_tokens, line, options)


def check_items(
    numbered: Iterable[Tuple[int, Any]], label: str = "line"
) -> Tuple[List[BatchItem], List[InputProblem]]:
    """Check ``(line, decoded object)`` pairs: the valid items and every problem found.

    A repeated id is a problem on its later occurrences; the first one is kept.
    """
    items: List[BatchItem] = []
    problems: List[InputProblem] = []
    first_seen: Dict[str, Tuple[int, Any]] = {}
    for line, obj in numbered:
        if isinstance(obj, InputProblem):
            problems.append(obj)
            continue
        try:
            key = id_key(obj["id"]) if isinstance(obj, dict) and "id" in obj else None
        except ValueError:
            key = None
        if key is not None and key in first_seen:
            first_line, first_id = first_seen[key]
            same = "" if first_id == obj["id"] else f" (as {json.dumps(first_id)}; ids are compared as text)"
            message = f"duplicate id {json.dumps(obj['id'])}: already used on {label} {first_line}{same}"
            problems.append(InputProblem(line, message, label))
            continue
        if key is not None:
            first_seen[key] = (line, obj["id"])
        try:
            items.append(parse_item(obj, line))
        except ValueError as exc:
            problems.append(InputProblem(line, str(exc), label))
    return items, problems


def _decoded_lines(data: bytes) -> Iterable[Tuple[int, Any]]:
    """``(line number, object or InputProblem)`` for each non-blank line."""
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark some editors add
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield number, InputProblem(number, f"not UTF-8 text (byte {exc.start + 1})")
            continue
        if not text:
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, InputProblem(number, f"not valid JSON: {exc.msg} (column {exc.colno})")
        except ValueError:  # the only other ValueError json raises: Python's integer size limit
            yield number, InputProblem(
                number, f"not usable JSON: a number has more than {_max_int_digits()} "
                "digits (Python's limit for integers)")
        except RecursionError:
            yield number, InputProblem(number, "not usable JSON: nested too deeply")


def _max_int_digits() -> int:
    # sys.get_int_max_str_digits exists from 3.11 and in 3.10 security releases (3.10.7+).
    limit = getattr(sys, "get_int_max_str_digits", None)
    return limit() if limit is not None else 4300


def read_batch_file(path: Union[str, Path]) -> Tuple[List[BatchItem], List[InputProblem]]:
    """Read a JSONL batch input file: its valid items and the problems of the others.
    Blank lines are ignored. Raises OSError when the file cannot be read."""
    return check_items(_decoded_lines(Path(path).read_bytes()))


def prepare_items(items: Iterable[Union[BatchItem, Mapping[str, Any]]]) -> List[BatchItem]:
    """Items given as objects (BatchItem or input-line dicts), all checked.

    Raises:
        BatchInputError: any item is invalid or an id repeats (nothing is sent).
    """
    numbered: List[Tuple[int, Any]] = []
    for position, item in enumerate(items, start=1):
        if isinstance(item, BatchItem):
            obj: Any = {"id": item.id, "messages": item.messages}
            if item.temperature is not None:
                obj["temperature"] = item.temperature
            if item.max_tokens is not None:
                obj["max_tokens"] = item.max_tokens
            obj.update(item.options)
        else:
            obj = dict(item) if isinstance(item, Mapping) else item
        numbered.append((position, obj))
    checked, problems = check_items(numbered, label="item")
    if problems:
        raise BatchInputError("batch items", problems)
    return checked
