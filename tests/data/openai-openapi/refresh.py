"""Refresh chat-completions-request.json from the official OpenAI OpenAPI description:
the closure of every schema CreateChatCompletionRequest references, copied unchanged.

    python tests/data/openai-openapi/refresh.py [path/to/openapi.json]

(default: ../shared/openai-openapi/openapi.json next to the repository). The result is
deterministic, so a refresh that changes nothing leaves the file byte for byte the same.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SOURCE = os.path.join(HERE, "..", "..", "..", "..", "shared", "openai-openapi", "openapi.json")
ROOTS = ("CreateChatCompletionRequest",)


def closure(schemas, roots):
    """Names of the schemas reachable from ``roots`` through ``#/components/schemas/`` refs."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stack = [schemas[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                    todo.append(ref.rsplit("/", 1)[1])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return seen


def main(source):
    with open(source, encoding="utf-8") as f:
        spec = json.load(f)
    schemas = spec["components"]["schemas"]
    names = sorted(closure(schemas, ROOTS))
    extract = {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "x-extracted": "components.schemas closure of CreateChatCompletionRequest from the official "
                       "OpenAI OpenAPI description (MIT, see LICENSE)",
        "components": {"schemas": {name: schemas[name] for name in names}},
    }
    target = os.path.join(HERE, "chat-completions-request.json")
    with open(target, "w", encoding="utf-8") as f:
        json.dump(extract, f, indent=1, sort_keys=False, ensure_ascii=False)
        f.write("\n")
    print(f"{len(names)} schemas from {source} (version {spec['info']['version']}) -> {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SOURCE)
