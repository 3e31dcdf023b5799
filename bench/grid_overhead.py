"""The grid's per-run overhead, in one process against one process per run, and how close the
dry run's ETA comes to the grid's actual time (issue 13). From the repository root:

    python -m bench.grid_overhead                  # MiniLM, RTE + SST-2, 3 seeds: 18 runs

One grid (single, STILTs, MTL, MTL_All over two tasks and three seeds; small runs: 64 training
examples per task, one epoch, batch 16, dev files cut to 64 rows) is planned with
``run_grid.py --dry-run --plan-json`` on empty outputs (so the ETA comes from the calibration),
then trained twice in fresh output folders: by ``run_grid.py`` in one process, and by the
``--emit shell`` script (one ``accelerate launch`` per run, as the README's shell loops do).
Per-run overhead = (the grid's wall time - the training, evaluation and checkpoint-wait seconds
the runs recorded) / runs. Each step is a subprocess timed from the outside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from bench import fixtures, report


def recorded_seconds(outputs: Path) -> tuple[int, float]:
    """Runs and the seconds they recorded inside the loop (train + evaluations + checkpoint waits)."""
    from mtlvsift.grid.estimate import inside_seconds  # loads the trainer's modules

    runs, inside = 0, 0.0
    for result in outputs.rglob("result.json"):
        if "report" in result.parts:
            continue
        inside += inside_seconds(json.loads(result.read_text())["timing"])
        runs += 1
    return runs, inside


def timed(command: list[str], log: Path) -> float:
    start = time.monotonic()
    with open(log, "w") as handle:
        done = subprocess.run(command, cwd=fixtures.REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        raise click.ClickException(f"{' '.join(command)} failed; see {log}")
    return time.monotonic() - start


@click.command(context_settings={"show_default": True})
@click.option("--model", default="minilm")
@click.option("--tasks", default="rte,sst2")
@click.option("--seeds", default="0,1,2")
@click.option("--max-train-examples", default=64)
@click.option("--max-dev-rows", default=64)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GLUE folder  [default: ../shared/glue, else .gpu-bundle/glue]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=fixtures.REPO_ROOT / "outputs" / "bench" / "grid_overhead.json")
def main(model, tasks, seeds, max_train_examples, max_dev_rows, data_dir, out):
    fixtures.offline_environment()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mtlvsift-grid-bench-") as tmp:
        work = Path(tmp)
        glue = fixtures.make_standin_glue(fixtures.source_data_dir(data_dir), work / "glue",
                                          max_train=512, max_dev=max_dev_rows)
        grid = [sys.executable, "scripts/run_grid.py", "--tasks", tasks, "--seeds", seeds,
                "--model", model, "--data-dir", str(glue), "--epochs", "1", "--batch-size", "16",
                "--max-seq-length", "128", "--max-train-examples", str(max_train_examples)]
        plan_file = work / "plan.json"
        dry = timed([*grid, "--output-dir", str(work / "in-process"), "--dry-run", "--plan-json",
                     str(plan_file)], work / "dry.log")
        plan = json.loads(plan_file.read_text())
        in_process = timed([*grid, "--output-dir", str(work / "in-process")], work / "in-process.log")
        timed([*grid, "--output-dir", str(work / "shell"), "--emit", "shell", "--emit-to",
               str(work / "emitted")], work / "emit.log")
        shell = timed(["bash", str(work / "emitted" / "grid.sh")], work / "shell.log")
        results = {}
        for name, wall, folder in (("in-process", in_process, "in-process"), ("process per run", shell, "shell")):
            runs, inside = recorded_seconds(work / folder)
            results[name] = {"runs": runs, "wall_seconds": wall, "inside_seconds": inside,
                             "overhead_per_run": (wall - inside) / runs}
    eta = plan["eta_seconds"]
    data = {"meta": report.meta("python -m bench.grid_overhead " + " ".join(sys.argv[1:]),
                                load_average_before=load, load_average_after=os.getloadavg()[0],
                                model=model, tasks=tasks, seeds=seeds,
                                max_train_examples=max_train_examples, max_dev_rows=max_dev_rows),
            "dry_run_seconds": dry, "eta_seconds": eta, "runs_planned": len(plan["runs"]),
            "eta_error": (eta - in_process) / in_process, "results": results}
    report.save_json(out, data)
    head = ["mode", "runs", "wall s", "inside the loop s", "overhead per run s"]
    rows = [[name, str(r["runs"]), report.fmt(r["wall_seconds"], 1), report.fmt(r["inside_seconds"], 1),
             report.fmt(r["overhead_per_run"], 2)] for name, r in results.items()]
    print(f"{data['meta']['machine']}, {data['meta']['date']}, load average {load:.2f} before, "
          f"{data['meta']['load_average_after']:.2f} after")
    print(report.markdown(head, rows))
    print(f"Dry run ({dry:.1f} s with calibration): ETA {eta:.1f} s for {len(plan['runs'])} runs; "
          f"actual in-process {in_process:.1f} s: error {100 * data['eta_error']:+.1f}%")
    print(f"Results: {out}")


if __name__ == "__main__":
    main()
