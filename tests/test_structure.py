"""The package's shape: no import cycles, a report side that never loads torch, short files."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "mtlvsift"
MAX_LINES = 420
HEAVY = ("torch", "transformers")


# --------------------------------------------------------------------------- import cycles


def module_name(path: Path) -> str:
    """``mtlvsift/train/data.py`` -> ``mtlvsift.train.data``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}
    assert "mtlvsift" in modules and len(modules) > 10, sorted(modules)
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific package module that ``name`` (a module or a name in one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported package module, line) for every import of the file, at any depth (functions
    too): ``import a.b``, ``from a import b`` (to the submodule ``a.b`` when it is one) and
    relative imports."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # The package the import is relative to: the module's own package, one up per dot.
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                assert base, f"{path}:{node.lineno}: relative import beyond the top-level package"
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != name:
                found.append((resolved, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported package module: line of the first such import}."""
    modules = package_modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in imports_of(name, path, modules):
            edges[target] = min(line, edges.get(target, line))
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the package is small enough to recurse
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # Breadth-first from start, inside the component, back to start: a shortest cycle.
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            following = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in members and w not in parents:
                        parents[w] = v
                        following.append(w)
            frontier = following
        path = [start]
        while True:
            path.append(parents[path[-1]])
            if path[-1] == start:
                break
        cycles.append(path[::-1])
    return cycles


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"d": 1}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) == []


def test_imports_are_resolved_to_package_modules(tmp_path):
    files = {
        "pkg/__init__.py": "from .sub import b\n",
        "pkg/a.py": "",
        "pkg/sub/__init__.py": "from . import b\nfrom .c import h\nfrom .. import a\nfrom pkg.sub import name\n",
        "pkg/sub/b.py": (
            "import os\n"
            "import pkg.a\n"
            "import pkg.sub as s\n"
            "from pkg import a\n"
            "from pkg.sub import name\n"
            "from . import c, name\n"
            "from ..a import f\n"
            "from pkg.sub.b import g\n"  # itself: not an edge
            "def later():\n"
            "    from pkg.sub.c import h\n"
        ),
        "pkg/sub/c.py": "",
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    modules = {"pkg": tmp_path / "pkg/__init__.py", "pkg.a": tmp_path / "pkg/a.py",
               "pkg.sub": tmp_path / "pkg/sub/__init__.py", "pkg.sub.b": tmp_path / "pkg/sub/b.py",
               "pkg.sub.c": tmp_path / "pkg/sub/c.py"}
    assert sorted(imports_of("pkg.sub.b", modules["pkg.sub.b"], modules)) == [
        ("pkg.a", 2), ("pkg.a", 4), ("pkg.a", 7), ("pkg.sub", 3), ("pkg.sub", 5), ("pkg.sub", 6),
        ("pkg.sub.c", 6), ("pkg.sub.c", 10)]
    assert sorted(imports_of("pkg.sub", modules["pkg.sub"], modules)) == [
        ("pkg.a", 3), ("pkg.sub.b", 1), ("pkg.sub.c", 2)]  # its own name (line 4) is no edge
    assert imports_of("pkg", modules["pkg"], modules) == [("pkg.sub.b", 1)]
    assert module_name(REPO_ROOT / "mtlvsift" / "train" / "__init__.py") == "mtlvsift.train"
    assert module_name(REPO_ROOT / "mtlvsift" / "train" / "batches" / "sampling.py") == "mtlvsift.train.batches.sampling"


def test_no_import_cycles_among_package_modules():
    graph = import_graph()
    assert sum(map(len, graph.values())) > 10  # the walk sees the package's own imports
    cycles = import_cycles(graph)
    # "a -[12]-> b": line 12 of module a imports module b.
    described = ["".join(f"{a} -[{graph[a][b]}]-> " for a, b in zip(c, c[1:])) + c[-1] for c in cycles]
    assert not cycles, "Import cycles among mtlvsift modules:\n" + "\n".join(described)


# --------------------------------------------------------------------------- no torch on the report side


# Records who first imports a heavy module, so that a failure names the culprit.
_SPY = """
import importlib.abc, json, sys, traceback
HEAVY = {heavy!r}
first = {{}}

class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in HEAVY and name not in first:
            first[name] = [line for line in traceback.format_stack()[:-1]
                           if "mtlvsift" in line or "scripts" in line]
        return None

sys.meta_path.insert(0, Spy())

def report():
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps({{"heavy": heavy, "first": first}}))
"""

_REPORT_IMPORTS = """
import importlib, pkgutil
import mtlvsift.report
names = ["mtlvsift.report"]
names += [f"mtlvsift.report.{m.name}" for m in pkgutil.iter_modules(mtlvsift.report.__path__)]
names += ["mtlvsift.run_record"]
for name in names:
    importlib.import_module(name)
assert len(names) > 3, names
report()
"""

_COMPARE_HELP = """
sys.path.insert(0, {tests!r})
from helpers import load_script
from click.testing import CliRunner
result = CliRunner().invoke(load_script("compare").main, ["--help"])
assert result.exit_code == 0 and "Usage" in result.output, result.output
report()
"""


@pytest.mark.parametrize("what, code", [
    ("import mtlvsift.report, its submodules and mtlvsift.run_record", _REPORT_IMPORTS),
    ("scripts/compare.py --help", _COMPARE_HELP.format(tests=str(REPO_ROOT / "tests"))),
])
def test_report_side_never_imports_torch_or_transformers(what, code):
    script = _SPY.format(heavy=HEAVY) + code
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["heavy"] == [], f"{what} imported {', '.join(seen['heavy'])}; first imported from:\n" + (
        "\n".join("".join(frames) for frames in seen["first"].values()))


# --------------------------------------------------------------------------- file sizes


def test_no_file_longer_than_420_lines():
    too_long = {}
    checked = 0
    for folder in ("mtlvsift", "scripts", "bench"):
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:  # not a text file: lines mean nothing
                continue
            checked += 1
            lines = len(text.splitlines())
            if lines > MAX_LINES:
                too_long[str(path.relative_to(REPO_ROOT))] = lines
    assert checked > 20
    assert not too_long, f"Files over {MAX_LINES} lines (split them): {too_long}"
