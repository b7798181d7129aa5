"""Mutation testing, one target at a time (``tox -e mutation -- TARGET``; TESTING.md).

mutmut reads its settings from ``[mutmut]`` in the setup.cfg of the directory it runs in,
one set per directory, and it always runs every selected test once to learn which test
reaches which function. To keep a run to minutes, each target (a ``[mutation:NAME]``
section of setup.cfg: the files to mutate and the tests that own them) runs in its own
work directory, ``build/mutation/NAME``, holding a copy of the package and the tests and
a setup.cfg with the target's ``[mutmut]`` section. The run is niced and uses one worker.

Mutants listed in ``tests/mutation_equivalent.txt`` (name, then why it cannot be killed)
are reported as equivalent instead of survived; the score is killed / (all - equivalent).

    python tools/mutation.py TARGET [TARGET ...]   # run, then report
    python tools/mutation.py --sample 150 TARGET   # a fixed random sample of its mutants
    python tools/mutation.py --report TARGET       # report the last run again
    python tools/mutation.py --diffs TARGET        # the change of every mutant not killed
    python tools/mutation.py --list                # the targets

``--sample N`` (seeded, so two runs of unchanged code pick the same mutants) keeps a big
target to minutes; the report then says how many of how many were tried.

Exit status: 0 when every target reached ``--fail-under`` (default 0: report only).
"""

import argparse
import configparser
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
EQUIVALENT_FILE = ROOT / "tests" / "mutation_equivalent.txt"

# mutmut 3's exit codes (mutmut/stats.py): what a mutant's test run ended with.
KILLED = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
          255: "timeout", 37: "caught by type check"}
SURVIVED = {0: "survived"}
NOT_RUN = {5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}

# Every target: per-test wall-clock bound (a mutant that hangs a test fails it), no cache.
# Reasons that mark a listed mutant as out of mutmut's reach rather than equivalent.
OUT_OF_REACH = ("import-time:", "fork-child:")

PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x", "--timeout=60", "-m", "not realserver"]


def read_targets() -> Dict[str, Dict[str, List[str]]]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    targets = {}
    for section in parser.sections():
        if section.startswith("mutation:"):
            targets[section.split(":", 1)[1]] = {
                key: parser.get(section, key).split() for key in ("mutate", "tests")}
    return targets


def read_equivalents() -> Dict[str, str]:
    """Pattern (a mutant name, or an fnmatch pattern) -> why it survives."""
    equivalents = {}
    if EQUIVALENT_FILE.exists():
        for line in EQUIVALENT_FILE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, why = line.partition(" ")
                equivalents[name] = why.strip()
    return equivalents


def listed(mutant: str, equivalents: Dict[str, str]) -> Optional[str]:
    """Why ``mutant`` is listed, or None."""
    if mutant in equivalents:
        return equivalents[mutant]
    return next((why for pattern, why in equivalents.items()
                 if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(mutant, pattern)),
                None)


def prepare(name: str, target: Dict[str, List[str]]) -> Path:
    """A fresh work directory: the package, the tests, and a setup.cfg for mutmut."""
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # The committed code (git's HEAD), not the checkout: an edit in progress never leaks
    # into a measurement, and the report can name the commit it measured.
    archive = subprocess.run(["git", "archive", "HEAD", "cowork_llm", "tests"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    (work / "COMMIT").write_text(commit + "\n")
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    for section in config.sections():
        if section.startswith("mutation:") or section == "mutmut":
            config.remove_section(section)
    config["mutmut"] = {
        "source_paths": "cowork_llm",
        "only_mutate": "\n" + "\n".join(target["mutate"]),
        "pytest_add_cli_args_test_selection": "\n" + "\n".join(target["tests"]),
        "pytest_add_cli_args": "\n" + "\n".join(PYTEST_ARGS),
        "use_git_change_detection": "false",
    }
    with open(work / "setup.cfg", "w") as out:
        config.write(out)
    return work


# Generating the mutants without running anything (what `mutmut run` does first), so a
# sample can be drawn from their names. mutmut 3's own functions, pinned by the extra.
_GENERATE = """
from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants,
                             setup_source_paths, store_lines_covered_by_tests)
copy_src_dir(); copy_also_copy_files(); setup_source_paths()
store_lines_covered_by_tests(); create_mutants(1)
"""


def _mutmut(work: Path, args: List[str], log_name: str = "mutmut.log") -> None:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # mutmut puts its mutated copy first on the path itself
    with open(work / log_name, "a") as log:
        subprocess.run(["nice", "-n", "19", sys.executable, *args], cwd=work, env=env,
                       stdout=log, stderr=subprocess.STDOUT, check=False)


def run(name: str, target: Dict[str, List[str]], sample: int = 0) -> float:
    work = prepare(name, target)
    started = time.monotonic()
    chosen: List[str] = []
    if sample:
        _mutmut(work, ["-c", _GENERATE])
        names = sorted(results(name))
        if len(names) > sample:
            chosen = sorted(random.Random(19).sample(names, sample))
    _mutmut(work, ["-m", "mutmut", "run", "--max-children", "1", *chosen])
    return time.monotonic() - started


def results(name: str) -> Dict[str, str]:
    """mutant name -> status, from mutmut's .meta files of the last run."""
    statuses = {}
    for meta in (WORK / name / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        for mutant, code in data.get("exit_code_by_key", {}).items():
            statuses[mutant] = (KILLED.get(code) or SURVIVED.get(code) or NOT_RUN.get(code)
                                or f"suspicious ({code})")
    return statuses


def report(name: str, seconds: float = 0.0) -> Tuple[float, str]:
    """Print and return the score of the last run of ``name``: killed / (tried - listed).
    Listed mutants that survived are counted apart: equivalent ones, and those out of
    mutmut's reach (code that runs only at import, or only in a forked child)."""
    everything = results(name)
    statuses = {m: s for m, s in everything.items() if s != "not checked"}
    equivalents = read_equivalents()
    why = {m: listed(m, equivalents) for m in statuses}
    killed = [m for m, s in statuses.items() if s in KILLED.values()]
    apart = [m for m, s in statuses.items() if s not in KILLED.values() and why[m]]
    at_import = [m for m in apart if (why[m] or "").startswith(OUT_OF_REACH)]
    survived = [m for m, s in statuses.items() if s not in KILLED.values() and not why[m]]
    counted = len(statuses) - len(apart)
    score = 100.0 * len(killed) / counted if counted else 0.0
    took = f", {seconds / 60:.1f} min" if seconds else ""
    sampled = (f"; a sample of {len(statuses)} of {len(everything)} mutants"
               if len(statuses) < len(everything) else "")
    commit_file = WORK / name / "COMMIT"
    commit = f" at {commit_file.read_text().strip()}" if commit_file.exists() else ""
    line = (f"{name}{commit}: {score:.1f}% of non-equivalent mutants killed "
            f"({len(killed)} of {counted}; {len(apart) - len(at_import)} equivalent, "
            f"{len(at_import)} out of reach, {len(survived)} not killed{sampled}{took})")
    print(line)
    for mutant in sorted(survived):
        print(f"    {statuses[mutant]:<12} {mutant}")
    for mutant in sorted(m for m in killed if why[m] and m in equivalents):
        print(f"    listed in {EQUIVALENT_FILE.name} but {statuses[mutant]}: {mutant}")
    print(f"    (the diffs: python tools/mutation.py --diffs {name})")
    return score, line


_DIFFS = """
import sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
for name in sys.argv[1:]:
    print("#", name)
    print(get_diff_for_mutant(name, path=find_mutant(name).path))
"""


def diffs(name: str) -> None:
    """Print the change of every mutant of the last run that was not killed."""
    equivalents = read_equivalents()
    names = sorted(m for m, s in results(name).items()
                   if s not in KILLED.values() and s != "not checked" and not listed(m, equivalents))
    if names:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        subprocess.run([sys.executable, "-c", _DIFFS, *names], cwd=WORK / name, env=env,
                       check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--report", action="store_true", help="report the last run, do not run")
    parser.add_argument("--diffs", action="store_true", help="show the mutants not killed")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="try a seeded random sample of N mutants")
    parser.add_argument("--fail-under", type=float, default=0.0)
    args = parser.parse_args()
    targets = read_targets()
    if args.list or not args.targets:
        for name, target in targets.items():
            print(f"{name}: mutates {' '.join(target['mutate'])}; tests {' '.join(target['tests'])}")
        return 0
    unknown = [t for t in args.targets if t not in targets]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; see --list")
    ok = True
    for name in args.targets:
        if args.diffs:
            diffs(name)
            continue
        seconds = 0.0 if args.report else run(name, targets[name], args.sample)
        score, _ = report(name, seconds)
        ok = ok and score >= args.fail_under
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
