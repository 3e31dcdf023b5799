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

import ctypes
import dataclasses
import json
import os
import platform
import signal
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
from mtlvsift.run_identity import StaleRun
from mtlvsift.run_lock import RunLock
from mtlvsift.stop_signals import (exit_status, signal_label, signal_number, stop_on_signals, stop_point,
                                   stops_at_safe_points)
from mtlvsift.train.config import TrainConfig, single_config_like, stilts_config

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class GridOutcome:
    trained: list[GridRun] = field(default_factory=list)
    skipped: list[GridRun] = field(default_factory=list)  # complete before the grid started
    failed: list[tuple[GridRun, str]] = field(default_factory=list)
    busy: list[tuple[GridRun, int]] = field(default_factory=list)  # another process's (its pid)
    stale: list[tuple[GridRun, str]] = field(default_factory=list)  # kept as they are (the reason)


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


def kept_as_is(run: GridRun, outcome: GridOutcome, console: Console) -> bool:
    """Whether a run the plan had to look at again (``recheck``: the single runs it reads were
    not all finished) needs no training now: complete (what it read is unchanged), or stale
    (kept, unless --retrain-stale); recorded and said."""
    if run.config.overwrite:
        return False
    status = run.status()
    if status == "complete":
        outcome.skipped.append(run)
        console.print(f"{run.label}: complete; what it read is unchanged.", highlight=False)
        return True
    if status == "stale" and not run.config.retrain_stale:
        record_stale(run, run.status_reason(), outcome, console)
        return True
    return False


def record_stale(run: GridRun, reason: str, outcome: GridOutcome, console: Console) -> None:
    outcome.stale.append((run, reason))
    console.print(f"[yellow]stale:[/] {run.label}: {safe_markup(reason)}; kept as it is "
                  f"(--retrain-stale trains it again).", highlight=False)


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
             estimates: dict[str, float | None], console: Console,
             recheck: frozenset[str] = frozenset()) -> GridOutcome:
    """Train the runs ``todo`` one after another in this process (``recheck``: the folders of
    runs looked at again once the single runs they read are finished)."""
    from mtlvsift.train.loop import run_training  # torch, only when something trains

    outcome, main = GridOutcome(skipped=skipped), is_main_process()
    started = time.monotonic()
    for number, run in enumerate(todo, 1):
        left = sum(estimates.get(r.run_dir) or 0 for r in todo[number - 1:])
        if main:
            console.rule(f"[bold]grid {number}/{len(todo)}[/] {run.label}  "
                         f"[dim](elapsed {describe_seconds(time.monotonic() - started)}, "
                         f"about {describe_seconds(left)} left)[/]")
        if (run.run_dir in recheck and kept_as_is(run, outcome, console)) or left_to_another(run, outcome, console):
            continue
        start = time.monotonic()
        try:
            run_training(run.config)
        except StaleRun as err:  # what it reads changed meanwhile
            record_stale(run, str(err), outcome, console)
            continue
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
             repo_root: Path, console: Console, recheck: frozenset[str] = frozenset(),
             runs_per_gpu: int | None = None) -> GridOutcome:
    """Up to ``jobs`` runs at once, each a process of its train script (``CUDA_VISIBLE_DEVICES``
    set to one GPU per slot where there are GPUs); a run starts once the runs it reads finished.

    Ctrl-C, SIGTERM, SIGHUP or SIGUSR1 to the grid are passed on to every run (each saves its
    state and stops); the grid waits for them, says so in one line and exits 128 + the signal's
    number. A run's process gets SIGTERM when the grid dies, even by SIGKILL (Linux)."""
    slots = _Slots(GridOutcome(skipped=skipped), list(todo), outputs, jobs, repo_root, console, recheck,
                   runs_per_gpu=runs_per_gpu)
    check_runs_per_gpu(jobs, slots.gpus, runs_per_gpu)
    (outputs / "grid-logs").mkdir(parents=True, exist_ok=True)
    with stop_on_signals():
        try:
            # A signal is acted on between polls, never inside a start or a log write.
            with stops_at_safe_points():
                while slots.todo or slots.running:
                    slots.collect_finished()
                    slots.start_ready()
                    time.sleep(0.2)
                    stop_point()
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or a stop signal (stop_signals.Stopped)
            stop_processes([process for _, process, _, _ in slots.running.values()],
                           signal_number(interrupt))
            console.print(f"Stopped ({signal_label(interrupt)}): {len(slots.running)} run(s) were "
                          f"interrupted (each resumes from its last checkpoint) and {len(slots.todo)} not "
                          f"started; rerun the same command to resume the grid.", highlight=False)
            raise click.exceptions.Exit(exit_status(interrupt)) from None
    return slots.outcome


@dataclass
class _Slots:
    """The runs of ``run_jobs``: to start, running (by slot: run, process, start time, log)."""

    outcome: GridOutcome
    todo: list[GridRun]
    outputs: Path
    jobs: int
    repo_root: Path
    console: Console
    recheck: frozenset[str] = frozenset()  # run_here's
    running: dict[int, tuple[GridRun, subprocess.Popen, float, Path]] = field(default_factory=dict)
    failed_dirs: set[str] = field(default_factory=set)
    caller: Path = field(default_factory=Path.cwd)  # the runs start in the repository: paths made absolute
    runs_per_gpu: int | None = None  # --runs-per-gpu: consecutive slots share a GPU
    gpus: int = field(default_factory=lambda: _gpu_count())

    def collect_finished(self) -> None:
        console = self.console
        for slot in [s for s, (_, process, _, _) in self.running.items() if process.poll() is not None]:
            run, process, start, log = self.running.pop(slot)
            if process.returncode == 0:
                self.outcome.trained.append(run)
                log_run(self.outputs, run, time.monotonic() - start, "process")
                console.print(f"done: {run.label}", highlight=False)
            elif process.returncode == StaleRun.exit_code:  # what it reads changed meanwhile
                record_stale(run, f"see {log}", self.outcome, console)
            elif not left_to_another(run, self.outcome, console):
                self.failed_dirs.add(run.run_dir)
                self.outcome.failed.append((run, f"exit code {process.returncode}; its output: "
                                                 f"{safe_text(log)}"))
                console.print(f"[red]failed:[/] {run.label} (see {safe_markup(log)})", highlight=False)

    def start_ready(self) -> None:
        """Start the runs whose prerequisites finished, while slots are free."""
        for run in list(self.todo):
            if len(self.running) >= self.jobs:
                break
            if any(need in self.failed_dirs for need in run.needs):
                self.todo.remove(run)
                self.outcome.failed.append((run, "a single run it reads failed"))
                continue
            waiting = {r.run_dir for r in self.todo} | {r.run_dir for r, *_ in self.running.values()}
            if any(need in waiting for need in run.needs):
                continue  # waits for the runs it reads
            self.todo.remove(run)
            if (run.run_dir in self.recheck and kept_as_is(run, self.outcome, self.console)) \
                    or left_to_another(run, self.outcome, self.console):
                continue
            slot = next(s for s in range(self.jobs) if s not in self.running)
            name = Path(run.run_dir).relative_to(self.outputs).as_posix().replace("/", "__")
            log = self.outputs / "grid-logs" / f"{name}.log"
            gpu = gpu_of_slot(slot, self.gpus, self.runs_per_gpu)
            process = _start(resolved_run(run, self.caller), self.repo_root, gpu, log,
                             cpu_threads(self.jobs, self.gpus))
            self.running[slot] = (run, process, time.monotonic(), log)
            self.console.print(f"started ({len(self.running)}/{self.jobs} slots): {run.label}",
                               highlight=False)


def gpu_of_slot(slot: int, gpus: int, runs_per_gpu: int | None) -> str | None:
    """The GPU (``CUDA_VISIBLE_DEVICES``) of a --jobs slot: round robin over the GPUs, or with
    --runs-per-gpu R the slots R by R (slots 0..R-1 on GPU 0); None without GPUs."""
    if not gpus:
        return None
    return str(slot // runs_per_gpu if runs_per_gpu else slot % gpus)


def check_runs_per_gpu(jobs: int, gpus: int, runs_per_gpu: int | None) -> None:
    """--runs-per-gpu R needs GPUs, and --jobs at most R x the GPUs visible."""
    if runs_per_gpu is None:
        return
    if not gpus:
        raise MtlvsiftError("--runs-per-gpu: no GPU is visible here (on the CPU, --jobs N alone "
                            "shares the cores among N runs).")
    if jobs > gpus * runs_per_gpu:
        raise MtlvsiftError(f"--jobs {jobs} with --runs-per-gpu {runs_per_gpu} needs "
                            f"{-(-jobs // runs_per_gpu)} GPUs; {gpus} are visible: lower --jobs to "
                            f"{gpus * runs_per_gpu} or raise --runs-per-gpu.")


def stop_processes(processes: list[subprocess.Popen], signum: int) -> None:
    """Pass the stop signal on to each process and wait for all of them; a second Ctrl-C meanwhile
    is passed on too (it stops a run at once)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    for process in processes:
        while True:
            try:
                process.wait()
                break
            except KeyboardInterrupt:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)


def cpu_threads(jobs: int, gpus: int) -> int | None:
    """Each run's share of the CPU cores when several train on the CPU at once, as torchrun
    limits its processes: torch's default (every core, each process) oversubscribes the cores,
    and its threads then wait on each other (measured 2026-12-03 on 2 cores beside a pytest job:
    MiniLM trained CoLA at 5.2 examples/s with torch's 2 threads, then SST-2, rows as short, at 82
    with one). None: on GPUs, or the user set OMP_NUM_THREADS."""
    if gpus or jobs < 2 or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // jobs)


def _start(run: GridRun, repo_root: Path, gpu: str | None, log: Path,
           threads: int | None = None) -> subprocess.Popen:
    """The run's train script in its own process (on one GPU when ``gpu``; with ``threads``
    CPU threads when given), its output appended to ``log`` after a line naming the attempt (a
    rerun keeps what the earlier attempts wrote)."""
    env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}),
               **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')}: started by the grid (pid "
                     f"{os.getpid()}): {run.command()}\n")
        handle.flush()
        return subprocess.Popen([sys.executable, *run.args()], cwd=repo_root, env=env,
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                preexec_fn=_child_setup())


def _child_setup():
    """What a run's process does before its script starts: its own process group, so a Ctrl-C at
    the terminal reaches only the grid (which passes it on once: a run given two stops at
    once); and, on Linux, SIGTERM when the grid dies however it dies (PR_SET_PDEATHSIG), so a
    killed grid leaves no run training behind it, holding its lock."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    grid = os.getpid()

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != grid:  # the grid died before the call: no signal will come
                os._exit(128 + signal.SIGTERM)

    return setup


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def calibrate(config: TrainConfig, tasks: list[str], console: Console) -> Speeds:
    """Measure each task's speed with a short single run (4 batches, two evaluations) of the
    grid's settings in a temporary folder, which is removed: nothing under the outputs changes.
    A stop signal at any moment removes it too (then the exit status is 128 + its number)."""
    try:
        # The handler spans the gaps between the runs, where the default action would kill the
        # process before the folder is removed.
        with stop_on_signals(), tempfile.TemporaryDirectory(prefix="mtlvsift-calibration-") as tmp:
            return _calibrate_in(tmp, config, tasks, console)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or a stop signal (stop_signals.Stopped)
        if is_main_process():
            console.print(f"Stopped ({signal_label(interrupt)}) while calibrating: its temporary "
                          f"folder is removed, nothing under the outputs changed.", highlight=False)
        raise click.exceptions.Exit(exit_status(interrupt)) from None


def _calibrate_in(tmp: str, config: TrainConfig, tasks: list[str], console: Console) -> Speeds:
    from mtlvsift.train.loop import run_training

    speeds = Speeds()
    overheads = []
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
