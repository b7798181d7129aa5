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
