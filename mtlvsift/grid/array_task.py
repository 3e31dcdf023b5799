"""One SLURM array task that trains several runs of the grid (``--runs-per-task K``), one after
another in this process: Python, torch and accelerate start once, not once per run.

``stage-<k>.sbatch`` starts it as ``accelerate launch --quiet -m mtlvsift.grid.array_task
--outputs DIR --task-number N -- COMMAND ...`` with the K commands of its share of the stage,
each a command of the plan (``accelerate launch --quiet scripts/<train script> ...``). Each is
parsed by its train script's own options, as the shell would run it (a command that is not
one is refused before anything trains), then the runs go through the grid's ``run_here``: a
finished run is skipped, an interrupted one resumes, a failed one is reported and the others go
on (exit status 1 at the end); a stop signal ends the task with 128 + its number, the run under
way checkpointed (the sbatch file requeues the task). ``<outputs>/grid-log.jsonl`` gets one
``array-task`` line (its start-up) and each trained run's line.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import time
from pathlib import Path

import click
import psutil

from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import SCRIPTS
from mtlvsift.stop_signals import exit_status, signal_label, stop_on_signals

LAUNCH = ["accelerate", "launch", "--quiet"]
NOT_RUN_OPTIONS = ("restart", "dry_run", "plan_json")


def parse_command(command: str):
    """A plan's command as the ``GridRun`` its train script would make (its own options parse
    it); anything else is an ``MtlvsiftError``."""
    from mtlvsift.grid.plan import GridRun
    from mtlvsift.train.config import mtl_all_config, mtl_config, stilts_config

    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    scripts = {f"scripts/{script}": method for method, script in SCRIPTS.items()}
    if words[:3] != LAUNCH or len(words) < 4 or words[3] not in scripts:
        raise MtlvsiftError(f"{command[:200]!r} is not a command of the grid's plan (accelerate "
                            f"launch --quiet scripts/<train script> ...); emit the scripts again.")
    script = _script(words[3])
    try:
        params = dict(script.main.make_context(Path(words[3]).name, words[4:]).params)
    except click.exceptions.Exit:  # --help
        params = {}
    if any(params.pop(name, None) for name in NOT_RUN_OPTIONS) or not params:
        raise MtlvsiftError(f"{command[:200]!r}: a grid's run trains (no --restart, --dry-run, "
                            f"--plan-json or --help); emit the scripts again.")
    if words[3].endswith("train_stilts.py"):
        config = stilts_config(params.pop("target"), params.pop("support"), params)
    elif words[3].endswith("train_mtl.py"):
        config = mtl_config(params.pop("target"), params.pop("support"), params)
    else:
        config = mtl_all_config(tuple(t for t in params.pop("tasks").split(",") if t), params)
    return GridRun(config, 2 if config.method == "stilts" or config.sampling == "dynamic" else 1)


def _script(relative: str):
    """A train script of this repository (the sbatch file runs in it) as a module."""
    import importlib.util

    path = Path.cwd() / relative
    spec = importlib.util.spec_from_file_location(f"mtlvsift_script_{path.stem}", path)
    if spec is None or not path.is_file():
        raise MtlvsiftError(f"{path} is not there: the array task runs in the repository the grid "
                            f"was emitted from.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_start(outputs: Path, task_number: int, runs: int, seconds: float) -> None:
    """The task's one start-up, in the grid log (read by people: the ETA reads the runs' lines)."""
    entry = {"event": "array-task", "job": os.environ.get("SLURM_JOB_ID"),
             "array_job": os.environ.get("SLURM_ARRAY_JOB_ID"), "task": task_number, "runs": runs,
             "host": platform.node(), "startup_seconds": round(seconds, 3),
             "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    outputs.mkdir(parents=True, exist_ok=True)
    with open(outputs / "grid-log.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


@click.command()
@click.option("--outputs", required=True, type=click.Path(file_okay=False), help="The grid's --output-dir.")
@click.option("--task-number", required=True, type=click.IntRange(0, 10**6), help="$SLURM_ARRAY_TASK_ID.")
@click.argument("commands", nargs=-1, required=True)
def main(outputs: str, task_number: int, commands: tuple[str, ...]) -> None:
    """Train the runs of ``commands`` one after another in this process."""
    from rich.console import Console

    from mtlvsift.grid.run import is_main_process, run_here

    console = Console(highlight=False)
    runs = [parse_command(command) for command in commands]
    startup = time.time() - psutil.Process().create_time()  # Python, imports, the options
    main_process = is_main_process()
    if main_process:
        log_start(Path(outputs), task_number, len(runs), startup)
        console.print(f"array task {task_number}: {len(runs)} runs in this process (start-up "
                      f"{startup:.1f} s, once)")
    try:
        with stop_on_signals():  # between runs too (the launcher passes SIGUSR1 on as ignored)
            outcome = run_here(runs, [], Path(outputs), {}, console)
    except KeyboardInterrupt as interrupt:  # between two runs: nothing under way to save
        console.print(f"array task {task_number}: stopped ({signal_label(interrupt)}) between "
                      f"runs; its rerun resumes the rest.")
        raise click.exceptions.Exit(exit_status(interrupt)) from None
    if main_process:
        console.print(f"array task {task_number}: {len(outcome.trained)} trained, "
                      f"{len(outcome.skipped)} already complete, {len(outcome.failed)} failed, "
                      f"{len(outcome.stale)} stale.")
    if outcome.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
