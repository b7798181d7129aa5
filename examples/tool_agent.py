"""A two-tool agent: the model looks up the weather, saves a note, then answers.

    python examples/tool_agent.py                # offline: the built-in fake server plays the model
    python examples/tool_agent.py "Plan a walk in Bergen"   # your own request

The tools are plain Python functions: their JSON schema comes from the type hints and
the docstring. ``llm.run_tools`` asks the model, runs the tools it calls (in this thread,
in order), sends their results back, and repeats until the model answers without a call;
every model step goes through the client's rate limiter and retries. With COWORK_LLM_* or
a config.toml, the same agent talks to your model (one that can call tools).
"""

import json
import logging
import os
import sys
from typing import Any, Dict, List, Literal, Optional

from cowork_llm import ConfigError, LlmError, RateLimitConfig, create_llm_client, load_config
from cowork_llm.testing import FakeLlmServer, tool_call

NOTES: Dict[str, str] = {}


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> Dict[str, Any]:
    """Get today's weather for a city.

    Args:
        city: the city, e.g. "Oslo"
        unit: the temperature unit
    """
    celsius = 8 + len(city) % 7  # a stand-in for a real weather service
    temperature = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": temperature, "unit": unit, "sky": "light rain"}


def save_note(title: str, text: str) -> str:
    """Save a short note for the user.

    Args:
        title: a few words naming the note
        text: the note itself
    """
    NOTES[title] = text
    return f"saved note {title!r}"


def fake_model(messages: List[Dict[str, Any]]) -> Any:
    """What the built-in fake server answers: the weather call, then the note, then the
    final answer — the way a tool-calling model would (OpenAI's wire format)."""
    done = [m for m in messages if m.get("role") == "tool"]
    if not done:
        return tool_call("get_weather", city="Oslo")
    if len(done) == 1:
        weather = json.loads(done[0]["content"])
        return tool_call("save_note", title="Walk in Oslo",
                         text=f"{weather['temperature']} degrees and {weather['sky']}: take a raincoat.")
    return "It is 12 degrees with light rain in Oslo; I saved a note to take a raincoat."


def nothing_configured() -> bool:
    return not (os.path.exists("config.toml") or os.environ.get("COWORK_CONFIG")
                or any(name.startswith("COWORK_LLM_") for name in os.environ))


def main(argv: List[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    request = argv[0] if argv else "What is the weather in Oslo? Save me a note for my walk."
    server: Optional[FakeLlmServer] = None
    try:
        if nothing_configured():
            print("no LLM configured — demo against the built-in fake server; "
                  "set COWORK_LLM_* or write config.toml to use a real one")
            server = FakeLlmServer(reply=fake_model).start()
            config = server.config(rate_limit=RateLimitConfig(min_interval_seconds=0.1))
        else:
            config = load_config()
        llm = create_llm_client(config)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    messages = [{"role": "system", "content": "Use the tools when they help. Be brief."},
                {"role": "user", "content": request}]
    try:
        with llm:
            run = llm.run_tools(messages, [get_weather, save_note], max_steps=6)
            usage = llm.usage()
    except LlmError as error:
        print(f"the agent failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
    for step in run.steps:
        for outcome in step.outcomes:
            status = "error" if outcome.error else "ok"
            print(f"step {step.index}: {outcome.call.name}({json.dumps(outcome.call.arguments)}) "
                  f"-> {status}: {outcome.output}")
    print(f"answer after {len(run.steps)} model steps: {run.content}")
    print(f"notes: {json.dumps(NOTES)}")
    print(usage)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
