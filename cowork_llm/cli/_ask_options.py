"""The request options of ``cowork-llm ask``: ``--model``, ``--temperature``,
``--max-tokens``, ``--json``, ``--schema FILE`` and ``--image PATH_OR_URL``, turned into
chat options, a model override and the user message's content parts.

Everything here is checked before any request: a bad value raises :class:`AskOptionError`
(exit 2) naming the option.
"""

import argparse
import base64
import json
import os
import re
from typing import Any, Dict, List, Optional

__all__ = ["AskOptionError", "add_request_arguments", "chat_options", "image_part", "user_content",
           "IMAGE_TYPES"]

#: The image files --image reads, by extension (the types both providers take).
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}
#: An image file larger than this is refused (both providers refuse ~20 MB requests anyway).
MAX_IMAGE_BYTES = 20 * 1024 * 1024
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]+")


class AskOptionError(ValueError):
    """A request option of ``ask`` cannot be used; the message names it and says why."""


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --temperature, --max-tokens, --json, --schema, --image."""
    parser.add_argument("--model", metavar="NAME", help="the model to ask instead of llm.model.model_name")
    parser.add_argument("--temperature", metavar="T", type=float, help="sampling temperature, 0 to 2")
    parser.add_argument("--max-tokens", metavar="N", type=int, dest="max_tokens",
                        help="most tokens the answer may have")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true",
                       help="ask for a JSON object; print the parsed JSON")
    shape.add_argument("--schema", metavar="FILE",
                       help="ask for JSON matching the JSON schema in FILE; print the parsed JSON")
    parser.add_argument("--image", metavar="PATH_OR_URL", action="append", default=[],
                        help="add an image (a .png/.jpg/.gif/.webp file or an http(s) URL) to "
                             "the prompt; repeatable")


def chat_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The keyword options for ``chat()``/``stream()``. Raises AskOptionError for an
    unreadable --schema file."""
    options: Dict[str, Any] = {}
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.json:
        options["response_format"] = {"type": "json_object"}
    elif args.schema is not None:
        options["response_format"] = _schema_format(args.schema)
    return options


def _schema_format(path: str) -> Dict[str, Any]:
    """The response_format for a --schema file: a JSON schema, or a whole response_format
    (``{"type": "json_schema", "json_schema": {...}}``)."""
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as error:
        raise AskOptionError(f"--schema {path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:
        raise AskOptionError(f"--schema {path}: not JSON ({error})") from None
    if not isinstance(schema, dict):
        raise AskOptionError(f"--schema {path}: must hold a JSON schema object")
    if schema.get("type") == "json_schema" and "json_schema" in schema:
        return schema
    stem = os.path.splitext(os.path.basename(path))[0]
    name = _SCHEMA_NAME.sub("_", stem)[:64] or "schema"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def image_part(source: str) -> Dict[str, Any]:
    """The ``image_url`` part for an http(s) URL, or for a file (sent inline as a
    ``data:`` URL). Raises AskOptionError for a missing, unknown-type or oversized file."""
    if source.startswith(("http://", "https://")):
        return {"type": "image_url", "image_url": {"url": source}}
    media_type = IMAGE_TYPES.get(os.path.splitext(source)[1].lower())
    if media_type is None:
        raise AskOptionError(f"--image {source}: not an image file this can send (use "
                             f"{', '.join(sorted(IMAGE_TYPES))}) or an http(s) URL")
    try:
        size = os.path.getsize(source)
        if size > MAX_IMAGE_BYTES:
            raise AskOptionError(f"--image {source}: {size:,} bytes, more than the "
                                 f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB providers take")
        with open(source, "rb") as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as error:
        raise AskOptionError(f"--image {source}: cannot read it ({error.strerror or error})") from None
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{encoded}"}}


def user_content(prompt: str, images: List[str]) -> Optional[List[Dict[str, Any]]]:
    """The user message's content parts (text, then the images), or None without
    images (the content is then the prompt string, as always)."""
    if not images:
        return None
    return [{"type": "text", "text": prompt}] + [image_part(source) for source in images]
