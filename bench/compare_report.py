"""Wall time of the comparison report on the paper's full grid: ``python scripts/compare.py
--outputs DIR`` over the synthetic 9x9 tree of tests/synthetic.py (9 single, 72 STILTs, 72 MTL
cells and MTL_All, 5 seeds: 770 run records), each repetition in a fresh process, as a user runs it
(interpreter start, imports, discovery, statistics, figures, report files). From the repository
root:

    python -m bench.compare_report                      # 3 repetitions, the median
    python -m bench.compare_report --repeats 5 --tree /tmp/tree9x9

The target (issue "Structure"; it was a unit test's assertion before): under 10 s.
"""

from __future__ import annotations

import importlib.util
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

SYNTHETIC = fixtures.REPO_ROOT / "tests" / "synthetic.py"
COMPARE = fixtures.REPO_ROOT / "scripts" / "compare.py"
TARGET_SECONDS = 10.0


def build_tree(root: Path) -> int:
    """tests/synthetic.py's ``paper_like_tree`` into ``root`` (tests/ is not a package: the file
    is loaded by its path); returns the number of run records written."""
    if not SYNTHETIC.is_file():
        raise click.ClickException(f"{SYNTHETIC} is missing: it writes the synthetic run tree.")
    spec = importlib.util.spec_from_file_location("bench_synthetic_tree", SYNTHETIC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.paper_like_tree(root)


def time_compare(tree: Path, repeats: int) -> list[float]:
    """Seconds of each ``python scripts/compare.py --outputs tree`` in a fresh process (the report
    folder removed before each, so that every repetition writes it anew). The checkout's mtlvsift
    comes first on the child's PYTHONPATH: it is what is timed, installed or not."""
    import shutil

    path = os.pathsep.join(p for p in (str(fixtures.REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg"}
    command = [sys.executable, str(COMPARE), "--outputs", str(tree)]
    seconds = []
    for _ in range(repeats):
        shutil.rmtree(tree / "report", ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=fixtures.REPO_ROOT, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise click.ClickException(f"{' '.join(command)} failed ({done.returncode}):\n"
                                       f"{done.stdout[-2000:]}{done.stderr[-4000:]}")
    if not (tree / "report" / "summary.json").is_file():
        raise click.ClickException(f"scripts/compare.py wrote no {tree / 'report' / 'summary.json'}")
    return seconds


@click.command(context_settings={"show_default": True})
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="Fresh processes to time.")
@click.option("--tree", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the synthetic tree (kept)  [default: a temporary folder]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON  [default: outputs/bench/compare_report.json]")
def main(repeats, tree, out):
    fixtures.offline_environment()  # inherited by scripts/compare.py's process
    out = out or fixtures.REPO_ROOT / "outputs" / "bench" / "compare_report.json"
    with tempfile.TemporaryDirectory(prefix="mtlvsift-compare-bench-") as tmp:
        root = (tree or Path(tmp) / "outputs").resolve()
        started = time.perf_counter()
        records = build_tree(root)
        build_seconds = time.perf_counter() - started
        load = os.getloadavg()[0]
        seconds = time_compare(root, repeats)
    median = statistics.median(seconds)
    command = " ".join(["python -m bench.compare_report", *sys.argv[1:]])
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": report.machine(),
              "python": platform.python_version(), "command": command,
              "timed": f"python scripts/compare.py --outputs DIR ({records} run records), fresh process",
              "run_records": records, "build_seconds": build_seconds, "seconds": seconds,
              "median_seconds": median, "target_seconds": TARGET_SECONDS,
              "load_average_before": load, "load_average_after": os.getloadavg()[0]}
    report.save_json(out, result)
    print(f"9x9 synthetic tree: {records} run records (written in {build_seconds:.1f} s)")
    print("scripts/compare.py, fresh process: " + ", ".join(f"{s:.2f}" for s in seconds) + " s")
    mark = "under" if median < TARGET_SECONDS else "NOT under"
    print(f"median {median:.2f} s over {repeats} run(s), {mark} the {TARGET_SECONDS:g} s target "
          f"({result['machine']}; load average {load:.2f} before, {result['load_average_after']:.2f} after)")
    print(f"Results: {out}")


if __name__ == "__main__":
    main()
