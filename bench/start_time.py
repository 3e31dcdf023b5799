"""How fast the scripts start (issue 25): wall seconds of ``--help``, an early error (an unknown
task) and a dry run of each train script, plus ``run_grid.py``'s, ``recommend.py``'s and
``compare.py``'s quick answers, each in a fresh process as a user types them. From the repository
root:

    python -m bench.start_time                                   # this checkout, 5 repetitions
    python -m bench.start_time --tree /tmp/before --tree .       # before and after in one run

Each ``--tree`` is a checkout (``git worktree add --detach /tmp/before <commit>``): its scripts
run with its own folder first on ``PYTHONPATH`` (checked: its ``mtlvsift`` is the one imported)
and as the working folder. The repetitions alternate between the trees, case by case, so that on a
shared machine both meet about the same load. Before the timed runs each case runs once under
``python -X importtime`` (not timed; it also warms the file cache) to record which of torch,
transformers, accelerate, datasets and evaluate it imported, its exit status and first line.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from bench import fixtures, report

HEAVY = ("torch", "transformers", "accelerate", "datasets", "evaluate")
# name -> (script, arguments); {data}: a GLUE folder, {out}: an empty outputs folder.
CASES = {
    "train_stilts --help": ("train_stilts", ["--help"]),
    "train_mtl --help": ("train_mtl", ["--help"]),
    "train_mtl_all --help": ("train_mtl_all", ["--help"]),
    "train_stilts --target nosuch": ("train_stilts", ["--target", "nosuch"]),
    "train_mtl --target nosuch --support rte": ("train_mtl", ["--target", "nosuch", "--support", "rte"]),
    "train_mtl_all --tasks nosuch": ("train_mtl_all", ["--tasks", "nosuch"]),
    "train_stilts --target rte --dry-run": ("train_stilts", ["--target", "rte", "--dry-run",
                                                             "--data-dir", "{data}", "--output-dir", "{out}"]),
    "train_mtl --target rte --support sst2 --sampling size --dry-run": (
        "train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size", "--dry-run",
                      "--data-dir", "{data}", "--output-dir", "{out}"]),
    "run_grid --help": ("run_grid", ["--help"]),
    "run_grid --tasks nosuch": ("run_grid", ["--tasks", "nosuch", "--output-dir", "{out}"]),
    "recommend --target nosuch": ("recommend", ["--target", "nosuch", "--outputs", "{out}"]),
    "compare --help": ("compare", ["--help"]),
}
DEFAULT_CASES = tuple(CASES)


def imported_modules(importtime: str) -> set[str]:
    """The top-level names of the modules ``-X importtime`` reports (``import time: self |
    cumulative | name`` lines, the name indented by its depth)."""
    names = set()
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name.split(".")[0])
    return names


def imported(importtime: str) -> list[str]:
    """Which of HEAVY the ``-X importtime`` output names."""
    names = imported_modules(importtime)
    return [m for m in HEAVY if m in names]


def tree_env(tree: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def describe_tree(tree: Path) -> dict[str, str]:
    """The tree's commit (``+`` when it has uncommitted changes) and the mtlvsift it imports,
    which must be its own."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True).stdout.strip()

    found = subprocess.run([sys.executable, "-c", "import mtlvsift; print(mtlvsift.__file__)"],
                           cwd=tree, env=tree_env(tree), capture_output=True, text=True)
    package = Path(found.stdout.strip() or ".").resolve()
    if found.returncode != 0 or tree.resolve() not in package.parents:
        raise click.ClickException(f"{tree}: python imports mtlvsift from {found.stdout.strip() or '?'}, "
                                   f"not from the tree ({found.stderr.strip()[-300:]}).")
    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"tree": str(tree), "commit": commit + ("+" if dirty else "")}


def command_of(tree: Path, case: str, data: Path, out: Path) -> list[str]:
    script, args = CASES[case]
    return [sys.executable, str(tree / "scripts" / f"{script}.py"),
            *[a.format(data=data, out=out) for a in args]]


def probe(tree: Path, case: str, data: Path, out: Path) -> dict:
    """One untimed run under ``-X importtime``: heavy imports, exit status, first line shown."""
    command = command_of(tree, case, data, out)
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], cwd=tree, env=tree_env(tree),
                          capture_output=True, text=True)
    shown = [line for line in (done.stdout + done.stderr).splitlines()
             if line.strip() and not line.startswith("import time:")]
    first = next((line for line in shown if line.startswith("Error")), shown[0] if shown else "")
    return {"heavy": imported(done.stderr), "exit": done.returncode, "first_line": first[:160]}


def timed(tree: Path, case: str, data: Path, out: Path) -> float:
    command = command_of(tree, case, data, out)
    start = time.perf_counter()
    subprocess.run(command, cwd=tree, env=tree_env(tree), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def markdown_table(result: dict) -> str:
    trees = result["trees"]
    head = ["command", *[f"{t['label']} `{t['commit']}` (s)" for t in trees],
            *[f"{t['label']}: imports" for t in trees]]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * len(trees)
                                                               + ["---"] * len(trees)) + " |"]
    for case in result["cases"]:
        medians = [f"{case['trees'][i]['median_seconds']:.2f}" for i in range(len(trees))]
        heavy = [", ".join(case["trees"][i]["heavy"]) or "none" for i in range(len(trees))]
        lines.append(f"| `{case['name']}` | " + " | ".join(medians + heavy) + " |")
    return "\n".join(lines)


@click.command(context_settings={"show_default": True})
@click.option("--tree", "trees", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A checkout to time (repeat: the first is 'before', the last 'after')  "
                   "[default: this checkout]")
@click.option("--repeats", type=click.IntRange(min=1), default=5, help="Timed runs per case and tree.")
@click.option("--cases", default=",".join(DEFAULT_CASES),
              help=f"Comma-separated case names, of: {'; '.join(CASES)}.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="GLUE folder of the dry runs (RTE, SST-2)  [default: ../shared/glue]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON  [default: outputs/bench/start_time.json]")
def main(trees, repeats, cases, data_dir, out):
    fixtures.offline_environment()  # inherited by every timed process
    names = [c.strip() for c in cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown or not names:
        raise click.BadParameter(f"unknown case(s) {unknown}; known: {'; '.join(CASES)}", param_hint="--cases")
    data = Path(data_dir or fixtures.REPO_ROOT.parent / "shared" / "glue").resolve()
    trees = [t.resolve() for t in trees] or [fixtures.REPO_ROOT]
    described = [describe_tree(t) for t in trees]
    for i, entry in enumerate(described):
        entry["label"] = "before" if len(trees) > 1 and i == 0 else "after" if i == len(trees) - 1 \
            and len(trees) > 1 else f"tree {i + 1}" if len(trees) > 1 else "this checkout"
    out = out or fixtures.REPO_ROOT / "outputs" / "bench" / "start_time.json"
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="mtlvsift-start-bench-") as tmp:
        empty = Path(tmp) / "outputs"
        empty.mkdir()
        for name in names:
            per_tree = [probe(t, name, data, empty) for t in trees]
            seconds: list[list[float]] = [[] for _ in trees]
            for r in range(repeats):
                order = range(len(trees)) if r % 2 == 0 else reversed(range(len(trees)))
                for i in order:
                    seconds[i].append(timed(trees[i], name, data, empty))
            for entry, s in zip(per_tree, seconds):
                entry.update(seconds=s, median_seconds=statistics.median(s))
            results.append({"name": name, "trees": per_tree})
            click.echo(f"{name}: " + "; ".join(
                f"{d['label']} {e['median_seconds']:.2f} s (exit {e['exit']}, "
                f"{', '.join(e['heavy']) or 'no heavy imports'})" for d, e in zip(described, per_tree)))
    command = " ".join(["python -m bench.start_time", *sys.argv[1:]])
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": report.machine(),
              "python": platform.python_version(), "command": command, "repeats": repeats,
              "data_dir": str(data), "trees": described, "cases": results,
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    report.save_json(out, result)
    click.echo("")
    click.echo(markdown_table(result))
    click.echo(f"\nmedian of {repeats} fresh process(es) per cell; {result['machine']}; load average "
               f"(1, 5, 15 min) {', '.join(f'{x:.2f}' for x in load_before)} before, "
               f"{', '.join(f'{x:.2f}' for x in result['load_average_after'])} after")
    click.echo(f"Results: {out}")


if __name__ == "__main__":
    main()
