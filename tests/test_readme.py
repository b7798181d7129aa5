"""The README's promises, checked: its testing-kit example runs, its install extras exist,
and every error class in its table is exported."""

import configparser
import re
from pathlib import Path

import cowork_llm

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_testing_kit_example_runs_as_written():
    block = next(b for b in _python_blocks() if "def test_" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()


def test_every_extra_the_readme_installs_exists():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    extras = set(parser["options.extras_require"])
    named = set()
    for group in re.findall(r'pip install -e "\.\[([a-z,]+)\]"', README):
        named.update(group.split(","))
    assert named, "the README names no extras"
    assert named <= extras, f"README installs unknown extras: {named - extras}"


def test_every_error_in_the_table_is_exported():
    table_names = set(re.findall(r"^\| [├└│ ]*`(\w+Error)`", README, flags=re.M))
    assert len(table_names) >= 15
    for name in table_names:
        assert name in cowork_llm.__all__
        assert issubclass(getattr(cowork_llm, name), cowork_llm.LlmError)


def test_the_tours_structured_output_and_image_block_runs():
    """The tour's structured-output block, against FakeLlmServer (which answers JSON
    matching the schema), on both providers as far as each goes."""
    from cowork_llm import create_llm_client
    from cowork_llm.testing import FakeLlmServer

    block = next(b for b in _python_blocks() if "response_format=River" in b)
    with FakeLlmServer() as server:
        for provider in ("openai", "anthropic"):
            with create_llm_client(server.config(provider=provider, key=f"readme-{provider}")) as llm:
                namespace: dict = {"llm": llm}
                # No seed on Anthropic (a ValueError before any request, as the README says).
                here = block if provider == "openai" else block.replace(", seed=7", "")
                exec(compile(here, "README.md", "exec"), namespace)
                assert namespace["answer"].parsed == namespace["River"]("text", 1)
        image = server.chat_requests[1].body["messages"][0]["content"][1]
        assert image == {"type": "image_url", "image_url": {"url": "https://example.com/river.jpg"}}
