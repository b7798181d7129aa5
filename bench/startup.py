"""Start-up: what a script pays before its first request, in fresh interpreters.

- cowork_llm: ``import cowork_llm`` + ``create_llm_client()`` configured from COWORK_LLM_*;
- floor: ``import requests, pyrate_limiter, tenacity, dataclasses_json`` + ``requests.Session()``
  (our dependencies: nothing can be cheaper than loading them);
- openai: ``import openai`` + ``openai.OpenAI()``.

Each run is a new ``python -c`` timing its own imports and construction (interpreter
start-up itself is the same for all and left out; it is printed once for reference).
The three run interleaved; the median over runs is reported.

Every contender loads its modules from bytecode, as after a ``pip install`` (which writes
the .pyc files): the runs share a fresh ``PYTHONPYCACHEPREFIX`` that one warm-up run per
contender fills. Without that, an editable install under ``PYTHONDONTWRITEBYTECODE=1``
(this machine's environment) compiles cowork_llm from source in every run (~21 ms for
its 21 modules) while the dependencies load their installed .pyc files: a comparison of
the compiler, not of the code. ``--as-is`` measures that condition anyway.

    .venv/bin/python bench/startup.py [--runs 30] [--as-is]

Targets (issue 9): cowork_llm adds at most 25% to the floor; the whole is under half of openai's.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

TIMED = "import time; _t0 = time.perf_counter()\n{body}\nprint((time.perf_counter() - _t0) * 1000)"
SNIPPETS = {
    "cowork_llm": "import cowork_llm\nclient = cowork_llm.create_llm_client()",
    "floor": "import requests, pyrate_limiter, tenacity, dataclasses_json\nsession = requests.Session()",
    "openai": "import openai\nclient = openai.OpenAI()",
}
ENV = {
    "COWORK_LLM_BASE_URL": "https://api.example.com/v1",
    "COWORK_LLM_API_KEY": "sk-bench-0123456789abcdef",
    "COWORK_LLM_MODEL_NAME": "gpt-4o-mini",
    "OPENAI_API_KEY": "sk-bench-0123456789abcdef",
}


def run_once(body: str, env: Dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", TIMED.format(body=body)], env=env, check=True,
                         capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--as-is", action="store_true",
                        help="use this environment's bytecode settings unchanged (see above)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COWORK_", "OPENAI_"))}
    env.update(ENV)
    with tempfile.TemporaryDirectory(prefix="startup-pyc-") as pycache:
        if not args.as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = pycache
        measure(args, env)


def measure(args: argparse.Namespace, env: Dict[str, str]) -> None:
    snippets = dict(SNIPPETS)
    try:
        run_once("import openai", env)
    except subprocess.CalledProcessError:
        print("openai is not installed: skipping it (pip install openai)")
        del snippets["openai"]
    if not args.as_is:
        for body in snippets.values():  # writes every module's .pyc under the prefix
            run_once(body, env)
    times: Dict[str, List[float]] = {name: [] for name in snippets}
    for _ in range(args.runs):
        for name, body in snippets.items():
            times[name].append(run_once(body, env))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = (time.perf_counter() - started) * 1000

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.runs} fresh interpreters each, "
          f"median ms (bare `python -c pass` took {bare:.0f} ms, not included); "
          + ("bytecode settings as found" if args.as_is else "every module from bytecode"))
    print("| what                                   | median ms | min ms | max ms |")
    print("|----------------------------------------|-----------|--------|--------|")
    for name, values in times.items():
        print(f"| {name:<38} | {medians[name]:9.1f} | {min(values):6.1f} | {max(values):6.1f} |")
    ours = medians["cowork_llm"] / medians["floor"] - 1
    print(f"cowork_llm adds {ours * 100:.0f}% to the floor (target: at most 25%)")
    if "openai" in medians:
        print(f"cowork_llm is {medians['cowork_llm'] / medians['openai'] * 100:.0f}% of openai's "
              "(target: under 50%)")


if __name__ == "__main__":
    main()
