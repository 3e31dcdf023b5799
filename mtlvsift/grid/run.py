"""Running a grid: in this process (the default: no start-up per run), or ``--jobs N`` runs at
once as separate processes (one GPU each where there are GPUs); and ``calibrate``, the short
single runs that measure a task's speed when no finished run has.

In this process, every run goes through ``run_training`` as the train scripts call it; under
``accelerate launch`` every process walks the same plan and each run uses all of them (DDP), as a
train script would. A finished run is skipped, an interrupted one resumes; a run that fails (a
missing or failed prerequisite, a NaN loss) is reported and the grid goes on with the others.
Each run the grid trains adds a line to ``<outputs>/grid-log.jsonl`` (wall time and overhead,
what the next ETA reads).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console

from mtlvsift import run_record
from mtlvsift.display import safe_markup, safe_text
from mtlvsift.errors import MtlvsiftError
from mtlvsift.grid.estimate import GRID_LOG, Speeds, describe_seconds, inside_seconds, speed_of_record
from mtlvsift.grid.paths import resolved_run
from mtlvsift.grid.plan import GridRun
from mtlvsift.run_folder import RESULT_FILE, folder_bytes
from mtlvsift.run_lock import RunLock
from mtlvsift.train.config import TrainConfig, single_config_like, stilts_config


@dataclass
class GridOutcome:
    trained: list[GridRun] = field(default_factory=list)
    skipped: list[GridRun] = field(default_factory=list)  # complete before the grid started
    failed: list[tuple[GridRun, str]] = field(default_factory=list)
    busy: list[tuple[GridRun, int]] = field(default_factory=list)  # another process's (its pid)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def left_to_another(run: GridRun, outcome: GridOutcome, console: Console) -> bool:
    """Whether another process (a second grid on the tree) holds the run now, or finished it
    since the plan was made; recorded (busy, or skipped) and said, never trained nor logged here.
    Under ``accelerate launch`` the processes of one run share its lock: not checked there."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return False
    holder = RunLock(Path(run.run_dir)).holder()
    if holder is not None:
        outcome.busy.append((run, holder))
        console.print(f"{run.label}: in use by another process (pid {holder}); left to it, not "
                      f"trained here.", highlight=False)
        return True
    if not run.config.overwrite and run.status() == "complete":
        outcome.skipped.append(run)
        console.print(f"{run.label}: finished by another process meanwhile.", highlight=False)
        return True
    return False


def log_run(outputs: Path, run: GridRun, wall: float, mode: str) -> None:
    """Append the run's wall time and overhead (wall less training, evaluation, checkpoint waits)."""
    try:
        inside = inside_seconds(run_record.load(Path(run.run_dir) / RESULT_FILE).get("timing"))
    except run_record.InvalidRecord:
        inside = 0.0
    entry = {"run": run.run_dir, "mode": mode, "model": run.config.model, "host": platform.node(),
             "wall_seconds": round(wall, 3), "overhead_seconds": round(max(0.0, wall - inside), 3),
             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    outputs.mkdir(parents=True, exist_ok=True)
    with open(outputs / GRID_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def run_here(todo: list[GridRun], skipped: list[GridRun], outputs: Path,
             estimates: dict[str, float | None], console: Console) -> GridOutcome:
    """Train the runs ``todo`` one after another in this process."""
    from mtlvsift.train.loop import run_training  # torch, only when something trains

    outcome, main = GridOutcome(skipped=skipped), is_main_process()
    started = time.monotonic()
    for number, run in enumerate(todo, 1):
        left = sum(estimates.get(r.run_dir) or 0 for r in todo[number - 1:])
        if main:
            console.rule(f"[bold]grid {number}/{len(todo)}[/] {run.label}  "
                         f"[dim](elapsed {describe_seconds(time.monotonic() - started)}, "
                         f"about {describe_seconds(left)} left)[/]")
        if left_to_another(run, outcome, console):
            continue
        start = time.monotonic()
        try:
            run_training(run.config)
        except MtlvsiftError as err:
            if left_to_another(run, outcome, console):  # taken between the check and the claim
                continue
            outcome.failed.append((run, safe_text(err, keep_lines=True)))
            if main:
                console.print(f"[red]{run.label} failed:[/] {safe_markup(err, keep_lines=True)}",
                              highlight=False)
            continue
        outcome.trained.append(run)
        if main:
            log_run(outputs, run, time.monotonic() - start, "in-process")
    return outcome


def run_jobs(todo: list[GridRun], skipped: list[GridRun], outputs: Path, jobs: int,
             repo_root: Path, console: Console) -> GridOutcome:
    """Up to ``jobs`` runs at once, each a process of its train script (``CUDA_VISIBLE_DEVICES``
    set to one GPU per slot where there are GPUs); a run starts once the runs it reads finished."""
    outcome, todo = GridOutcome(skipped=skipped), list(todo)
    caller = Path.cwd()  # the runs' processes start in the repository: their paths made absolute
    gpus = _gpu_count()
    log_dir = outputs / "grid-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    failed_dirs: set[str] = set()
    running: dict[int, tuple[GridRun, subprocess.Popen, float, Path]] = {}
    try:
        while todo or running:
            for slot in [s for s, (run, process, start, log) in running.items() if process.poll() is not None]:
                run, process, start, log = running.pop(slot)
                if process.returncode == 0:
                    outcome.trained.append(run)
                    log_run(outputs, run, time.monotonic() - start, "process")
                    console.print(f"done: {run.label}", highlight=False)
                elif not left_to_another(run, outcome, console):
                    failed_dirs.add(run.run_dir)
                    outcome.failed.append((run, f"exit code {process.returncode}; its output: "
                                                f"{safe_text(log)}"))
                    console.print(f"[red]failed:[/] {run.label} (see {safe_markup(log)})",
                                  highlight=False)
            for run in list(todo):
                if len(running) >= jobs:
                    break
                if any(need in failed_dirs for need in run.needs):
                    todo.remove(run)
                    outcome.failed.append((run, "a single run it reads failed"))
                    continue
                if any(need in {r.run_dir for r in todo} | {r.run_dir for r, *_ in running.values()}
                       for need in run.needs):
                    continue  # waits for the runs it reads
                todo.remove(run)
                if left_to_another(run, outcome, console):
                    continue
                slot = next(s for s in range(jobs) if s not in running)
                log = log_dir / (Path(run.run_dir).relative_to(outputs).as_posix().replace("/", "__") + ".log")
                gpu = str(slot % gpus) if gpus else None
                process = _start(resolved_run(run, caller), repo_root, gpu, log)
                running[slot] = (run, process, time.monotonic(), log)
                console.print(f"started ({len(running)}/{jobs} slots): {run.label}", highlight=False)
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl-C reaches the runs too: each saves its state and stops
        for run, process, _, _ in running.values():
            process.wait()
        console.print(f"Stopped (Ctrl-C): {len(running)} run(s) were interrupted and "
                      f"{len(todo)} not started; rerun the same command to resume the grid.")
        raise click.exceptions.Exit(130) from None
    return outcome


def _start(run: GridRun, repo_root: Path, gpu: str | None, log: Path) -> subprocess.Popen:
    """The run's train script in its own process (on one GPU when ``gpu``), output to ``log``."""
    env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}))
    with open(log, "w", encoding="utf-8") as handle:
        return subprocess.Popen([sys.executable, *run.args()], cwd=repo_root, env=env,
                                stdout=handle, stderr=subprocess.STDOUT)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def calibrate(config: TrainConfig, tasks: list[str], console: Console) -> Speeds:
    """Measure each task's speed with a short single run (4 batches, two evaluations) of the
    grid's settings in a temporary folder, which is removed: nothing under the outputs changes."""
    from mtlvsift.train.loop import run_training

    speeds = Speeds()
    overheads = []
    with tempfile.TemporaryDirectory(prefix="mtlvsift-calibration-") as tmp:
        for task in tasks:
            # The grid's single-run options, on a short run of 4 batches and 2 evaluations.
            options = {**single_config_like(config, task, 4 * config.batch_size).options,
                       "epochs": 1, "eval_every": 0.5, "seed": 0, "output_dir": tmp, "log_every": 1,
                       "overwrite": False, "keep_state": False, "report_to": []}
            probe = stilts_config(task, None, options)
            if is_main_process():
                console.print(f"calibrating {task}: 4 batches of {config.batch_size} and 2 "
                              f"evaluations with {safe_markup(config.model)} ...", highlight=False)
            start = time.monotonic()
            record = run_training(probe)
            wall = time.monotonic() - start
            speed = speed_of_record(record.get("timing"))
            if speed is None:
                raise MtlvsiftError(f"The calibration run of {task} recorded no timing.")
            speeds.tasks[task] = dataclasses.replace(speed, source="calibration")
            overheads.append(wall - inside_seconds(record.get("timing")))
            if speeds.run_bytes is None:
                speeds.run_bytes = folder_bytes(probe.run_dir)
    speeds.overhead["in-process"] = max(0.0, min(overheads))
    return speeds
