"""Mutation score of the pure cores: how many small deliberate bugs the fast tests catch.

Run from the repository root (scripts/mutation.sh installs mutmut first and passes its arguments on):

    .venv/bin/python -m bench.mutation [PACKAGE ...] [--max-children 2] [--workdir DIR]

Packages default to controller and common, plus speaker and dataplane once they hold code. Only their pure
modules are mutated: a module that imports an I/O library (kopf, kubernetes, aiohttp, asyncio, pyroute2,
scapy, subprocess, ...) is the thin shell, tested in the lab, and too slow to run once per mutant. The tests
are the unit tests plus the pure tests listed in PURE_TESTS.

mutmut 3 (pinned in the `mutation` extra) runs in a copy of the repository, so the checkout is never touched
and a run can go on while you work. The report gives the score per package, killed (including timeouts) over
all mutants, and every surviving mutant that docs/testing.md does not list as equivalent. The exit status is 1
if a package scores under --min-score or a survivor is unexplained.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "testing.md"
DEFAULT_PACKAGES = ("controller", "common", "speaker", "dataplane")
# Tests that need neither root nor an API server, outside tests/unit.
PURE_TESTS = ("tests/controller/test_reconcile.py",)
# Importing any of these makes a module part of a shell (the guide's list, the async and network stacks, and
# our Kubernetes shell).
SHELL_IMPORTS = frozenset(
    {
        "aiohttp", "asyncio", "http", "k8s", "kopf", "kubernetes", "prometheus_client", "pyroute2",
        "requests", "scapy", "socket", "ssl", "subprocess", "threading", "urllib",
    }
)  # fmt: skip
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".lab", "mutants", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache",
    "*.egg-info", "build",
)  # fmt: skip
KILLED = ("killed", "timeout")
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "bench.mutation_pytest", "--hypothesis-seed=0"]
# A docs/testing.md entry: - `common/config.py::_type_name` `mutated line`: why it is equivalent
EQUIVALENT_ENTRY = re.compile(r"^- `(?P<file>[^`:]+)::(?P<function>[^`]+)` `(?P<line>.+?)`: (?P<reason>.+)$")


@dataclass(frozen=True)
class Survivor:
    name: str  # mutmut's key, e.g. common.config.x__type_name__mutmut_2
    status: str  # survived, no tests, suspicious, ...
    file: str  # common/config.py
    function: str  # _type_name, or Class.method
    added: str  # the mutated line(s), stripped, joined by " / " (mutated_lines)
    diff: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What docs/testing.md lists an equivalent mutant under."""
        return self.file, self.function, self.added

    @property
    def package(self) -> str:
        return self.name.split(".", 1)[0]


def module_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def shell_modules(packages: list[str]) -> list[str]:
    """The modules of `packages` (paths relative to the repository) that are shell, not pure core."""
    found = []
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            if module_imports(path) & SHELL_IMPORTS:
                found.append(str(path.relative_to(REPO)))
    return found


def default_packages() -> list[str]:
    return [p for p in DEFAULT_PACKAGES if any((REPO / p).rglob("*.py"))]


def test_paths() -> list[str]:
    """Every unit test (mutmut runs, per mutant, only those that reach the mutated function: common/ is
    used and tested by every component) and the pure tests kept elsewhere."""
    return ["tests/unit", *(p for p in PURE_TESTS if (REPO / p).exists())]


def write_config(workdir: Path, packages: list[str], excluded: list[str], tests: list[str]) -> None:
    names = [p.name for p in REPO.iterdir() if p.is_dir() and p.name not in packages and p.name != "tests"]
    others = sorted(set(names) - COPY_IGNORE(str(REPO), names))

    def listing(values: list[str]) -> str:
        return "".join(f"\n    {value}" for value in values)

    (workdir / "setup.cfg").write_text(
        "[mutmut]\n"
        f"source_paths ={listing(packages)}\n"
        f"do_not_mutate ={listing(excluded)}\n"
        f"also_copy ={listing(others)}\n"
        f"pytest_add_cli_args_test_selection ={listing(tests)}\n"
        # A fixed seed: hypothesis then kills the same mutants every run; bench/mutation_pytest.py caps the
        # examples of property tests.
        f"pytest_add_cli_args ={listing(PYTEST_ARGS)}\n"
    )


def mutmut(workdir: Path, *args: str, capture: bool = True) -> str:
    binary = Path(sys.executable).with_name("mutmut")
    # The mutated copy comes first on the path (mutmut runs pytest inside it), bench.mutation_pytest with it.
    # It must exist before mutmut starts: Python caches a path entry missing at start-up as absent, and the
    # first run in a new work directory then failed to import bench.mutation_pytest (No module named bench).
    (workdir / "mutants").mkdir(exist_ok=True)
    env = dict(
        os.environ,
        TMPDIR=str(workdir / "tmp"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=str(workdir / "mutants"),
    )
    result = subprocess.run(
        [str(binary), *args], cwd=workdir, env=env, text=True, capture_output=capture, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"mutmut {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout or ""


def statuses(workdir: Path) -> dict[str, str]:
    found = {}
    for line in mutmut(workdir, "results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            found[name] = status
    return found


def where(name: str) -> tuple[str, str]:
    """(file, function) of a mutant key such as common.errors.xǁConfigErrorǁunder__mutmut_3."""
    qualified = name.rsplit("__mutmut_", 1)[0]
    module, _, mangled = qualified.rpartition(".")
    if mangled.startswith("xǁ"):
        cls, _, method = mangled[2:].partition("ǁ")
        function = f"{cls}.{method}"
    else:
        function = mangled[2:]
    return module.replace(".", "/") + ".py", function


# One process for every diff (`mutmut show` costs a second per mutant): mutmut's own diff of each mutant.
DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in json.load(sys.stdin)}))
"""


def survivors_of(workdir: Path, left: list[tuple[str, str]]) -> list[Survivor]:
    result = subprocess.run(
        [sys.executable, "-c", DIFFS],
        cwd=workdir,
        input=json.dumps([name for name, _ in left]),
        text=True,
        capture_output=True,
        check=True,
    )
    diffs: dict[str, str] = json.loads(result.stdout)
    found = []
    for name, status in left:
        diff = diffs[name].strip()
        file, function = where(name)
        found.append(Survivor(name, status, file, function, mutated_lines(diff), diff))
    return found


def mutated_lines(diff: str) -> str:
    """How docs/testing.md names a mutant's change: its added lines, stripped and joined by " / ", or, for a
    mutant that only deletes (a keyword argument dropped), "deleted: " and the deleted lines."""
    lines = diff.splitlines()
    added = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    if added:
        return " / ".join(added)
    removed = [line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")]
    return "deleted: " + " / ".join(removed)


def equivalents(docs: Path) -> dict[tuple[str, str, str], str]:
    """(file, function, mutated line) -> reason, from docs/testing.md's list of equivalent mutants."""
    found = {}
    if docs.exists():
        for line in docs.read_text().splitlines():
            match = EQUIVALENT_ENTRY.match(line.strip())
            if match:
                key = (match["file"], match["function"], match["line"])
                found[key] = match["reason"]
    return found


def report(results: dict[str, str], packages: list[str]) -> list[str]:
    lines = ["| package | mutants | killed | survived | no tests | score |", "|---|---|---|---|---|---|"]
    for package in packages:
        mine = [status for name, status in results.items() if name.split(".", 1)[0] == package]
        if not mine:
            continue
        counts = Counter(mine)
        killed = sum(counts[s] for s in KILLED)
        tested = len(mine) - counts["skipped"]
        score = 100.0 * killed / tested if tested else 0.0
        lines.append(
            f"| {package} | {len(mine)} | {killed} | {counts['survived']} | {counts['no tests']} "
            f"| {score:.1f}% |"
        )
    return lines


def score_of(results: dict[str, str], package: str) -> float:
    mine = [s for n, s in results.items() if n.split(".", 1)[0] == package and s != "skipped"]
    return 100.0 * sum(s in KILLED for s in mine) / len(mine) if mine else 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("packages", nargs="*", help="top-level packages (default: %(default)s)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument("--workdir", type=Path, help="keep the copy here (re-running there is incremental)")
    parser.add_argument("--min-score", type=float, default=90.0, help="percent killed each package needs")
    parser.add_argument(
        "--report-only", action="store_true", help="with the --workdir of an earlier run: only report on it"
    )
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="with the --workdir of an earlier run: test again only the mutants it did not kill, except "
        "those docs/testing.md explains",
    )
    args = parser.parse_args(argv)
    packages = args.packages or default_packages()
    for package in packages:
        if not (REPO / package / "__init__.py").exists():
            parser.error(f"{package} is not a package of this repository")

    excluded = shell_modules(packages)
    tests = test_paths()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ironlb-mutation-"))
    print(f"mutating {', '.join(packages)}; shell modules left out: {', '.join(excluded) or 'none'}")
    print(f"tests: {' '.join(tests)}; work dir: {workdir}")
    if args.report_only:
        if not (workdir / "mutants").exists():
            parser.error(f"no earlier run in {workdir}")
        return report_on(workdir, packages, args.min_score, elapsed=None, max_children=args.max_children)
    if workdir.exists() and (workdir / "mutants").exists():
        # Incremental: refresh the sources, keep mutmut's results for functions that did not change.
        for entry in REPO.iterdir():
            if entry.name not in (".git", ".venv", ".lab") and entry.is_dir():
                shutil.rmtree(workdir / entry.name, ignore_errors=True)
                shutil.copytree(entry, workdir / entry.name, ignore=COPY_IGNORE)
        # mutmut copies the tests into mutants/ over the old copy: a test file deleted since would stay, and
        # break test collection if it imports a module that is gone. mutmut copies them afresh.
        shutil.rmtree(workdir / "mutants" / "tests", ignore_errors=True)
    else:
        shutil.copytree(REPO, workdir, ignore=COPY_IGNORE, dirs_exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    write_config(workdir, packages, excluded, tests)

    again = []
    if args.rerun_survivors:
        # Those docs/testing.md explains are not tested again: a survivor that is equivalent stays one, and
        # it costs the most (every test that reaches it runs to the end).
        left = sorted(
            (name, status)
            for name, status in statuses(workdir).items()
            if status not in (*KILLED, "skipped") and name.split(".")[0] in packages
        )
        explained = equivalents(DOCS)
        # Only those that ran and survived: a mutant not checked yet (its function changed) is tested whatever
        # the docs say about the mutant it replaces.
        found = survivors_of(workdir, left)
        again = [m.name for m in found if m.status != "survived" or m.key not in explained]
        print(f"testing again {len(again)} mutants not killed last time ({len(left) - len(again)} explained)")
    began = time.monotonic()
    if again or not args.rerun_survivors:  # mutmut run without names would test every mutant
        mutmut(workdir, "run", "--max-children", str(args.max_children), *again, capture=False)
    status = report_on(workdir, packages, args.min_score, time.monotonic() - began, args.max_children)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def report_on(
    workdir: Path, packages: list[str], min_score: float, elapsed: float | None, max_children: int
) -> int:
    results = {name: status for name, status in statuses(workdir).items() if name.split(".")[0] in packages}
    left = sorted((name, status) for name, status in results.items() if status not in (*KILLED, "skipped"))
    survivors = survivors_of(workdir, left)
    explained = equivalents(DOCS)
    unexplained = [s for s in survivors if s.key not in explained]

    print()
    print("\n".join(report(results, packages)))
    if elapsed is not None:
        print(f"\n{len(results)} mutants in {elapsed / 60:.1f} min with --max-children {max_children}")
    print(f"{len(survivors) - len(unexplained)} survivors listed as equivalent in {DOCS.relative_to(REPO)}")
    for s in unexplained:
        print(f"\n## {s.name} ({s.status}) not killed and not listed as equivalent\n")
        print(f"- `{s.file}::{s.function}` `{s.added}`: WHY")
        print("\n".join("    " + line for line in s.diff.splitlines()))
    low = [p for p in packages if score_of(results, p) < min_score]
    if low:
        print(f"\nunder {min_score}%: {', '.join(low)}")
    return 1 if low or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
