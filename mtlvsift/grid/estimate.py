"""How long a grid will take and how much disk it will use, from what finished runs measured.

Per task, on this machine (``timing.host``) and with this model: the training examples per second
and the seconds per evaluation of its single runs (``result.json``'s ``timing``), and the loop's
wait per checkpoint. A run's estimate is its training rows over each task's rate, plus its
evaluations and checkpoint waits, plus a per-run overhead (set-up, model loading, the last write)
measured by earlier grid runs (``grid-log.jsonl``) or by the calibration. Tasks without a
measured single run are calibrated by ``calibrate`` (a short single run in a temporary folder).
Timing fields are read from disk, so each is checked before it is used.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from mtlvsift import run_record
from mtlvsift.display import safe_text
from mtlvsift.run_folder import folder_bytes
from mtlvsift.run_index import discover
from mtlvsift.scores import is_number
from mtlvsift.train.config import TrainConfig
from mtlvsift.train.plan import available_train_sizes, eval_points, first_epoch_layout, \
    first_probabilities, used_train_sizes

GRID_LOG = "grid-log.jsonl"  # in the outputs folder: one line per run the grid trained
DEFAULT_OVERHEAD = {"in-process": 3.0, "process": 15.0}  # seconds, until measured here
# Beyond these a timing is no measurement (1e308 seconds would overflow the ETA's sums).
MAX_SECONDS = 1e8  # about three years
MAX_EXAMPLES = 1e12
TIMING_LIMITS = {"train_seconds": MAX_SECONDS, "examples": MAX_EXAMPLES,
                 "eval_seconds": MAX_SECONDS, "checkpoint_blocked_seconds": MAX_SECONDS}


@dataclass
class TaskSpeed:
    train_examples_per_s: float
    eval_seconds: float  # one evaluation of the task's dev set(s)
    checkpoint_seconds: float  # the loop's wait per checkpoint
    source: str  # "runs" or "calibration"


@dataclass
class Speeds:
    tasks: dict[str, TaskSpeed] = field(default_factory=dict)
    overhead: dict[str, float] = field(default_factory=dict)  # mode -> seconds per run
    run_bytes: int | None = None  # disk of one finished run folder (best/ and files)
    state_bytes: int | None = None  # state/ while a run trains (removed at its end)

    def overhead_for(self, mode: str) -> float:
        return self.overhead.get(mode, DEFAULT_OVERHEAD[mode])


def _number(value: Any, most: float = MAX_SECONDS) -> float | None:
    """A finite number from 0 to ``most`` read from a record, else None."""
    return float(value) if is_number(value) and 0 <= value <= most else None


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    numbers = [_number(v) for v in value]
    return None if None in numbers else numbers


def timing_problem(timing: dict) -> str | None:
    """Why a record's ``timing`` cannot be a measurement (a field present but not a number in its
    range), else None; missing fields only leave the run unmeasured."""
    for key, most in TIMING_LIMITS.items():
        value = timing.get(key)
        if value is None:
            continue
        if any(_number(v, most) is None for v in (value if isinstance(value, list) else [value])):
            return f"'{key}' holds {json.dumps(value)[:40]}, not numbers from 0 to {most:g}"
    return None


def inside_seconds(timing: Any) -> float:
    """The seconds a run's ``timing`` says it spent training, evaluating and waiting for
    checkpoints (what is not set-up); fields that are not numbers count 0."""
    if not isinstance(timing, dict):
        return 0.0
    parts = [_number(timing.get("train_seconds")), *(_numbers(timing.get("eval_seconds")) or []),
             *(_numbers(timing.get("checkpoint_blocked_seconds")) or [])]
    return sum(p for p in parts if p is not None)


def speed_of_record(timing: Any) -> TaskSpeed | None:
    """A single run's speed from its ``timing`` (None when a field is missing or not a number)."""
    if not isinstance(timing, dict):
        return None
    train = _number(timing.get("train_seconds"))
    examples = _number(timing.get("examples"), MAX_EXAMPLES)
    evals = _numbers(timing.get("eval_seconds"))
    waits = _numbers(timing.get("checkpoint_blocked_seconds")) or [0.0]
    if not train or not examples or not evals:
        return None
    # The first evaluation pays for warming up; later ones are what a long run sees.
    steady = evals[1:] or evals
    return TaskSpeed(examples / train, statistics.median(steady), statistics.median(waits), "runs")


def measured_speeds(outputs: Path, model: str, num_processes: int = 1) -> Speeds:
    """What the finished single runs under ``outputs`` measured on this machine with ``model``."""
    speeds = Speeds()
    host = platform.node()
    by_task: dict[str, list[TaskSpeed]] = {}
    for record in discover(outputs).records:
        if record.method != "single" or record.model != model or record.is_size_experiment:
            continue
        try:
            timing = run_record.load(record.path).get("timing")
        except run_record.InvalidRecord:
            continue
        if not isinstance(timing, dict) or timing.get("host") != host \
                or timing.get("num_processes") != num_processes:
            continue
        problem = timing_problem(timing)
        if problem:
            click.echo(f"Warning: ignored the timing of {safe_text(record.path)}: {problem}.",
                       err=True)
            continue
        speed = speed_of_record(timing)
        if speed:
            by_task.setdefault(record.target, []).append(speed)
        if speeds.run_bytes is None:
            speeds.run_bytes = folder_bytes(record.folder)
    for task, found in by_task.items():
        speeds.tasks[task] = TaskSpeed(statistics.median(s.train_examples_per_s for s in found),
                                       statistics.median(s.eval_seconds for s in found),
                                       statistics.median(s.checkpoint_seconds for s in found), "runs")
    speeds.overhead.update(logged_overhead(outputs / GRID_LOG, model, host))
    return speeds


def logged_overhead(log: Path, model: str, host: str) -> dict[str, float]:
    """Median seconds per run outside training, evaluation and checkpoint waits, per mode."""
    seen: dict[str, list[float]] = {}
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if not isinstance(entry, dict) or entry.get("model") != model or entry.get("host") != host:
            continue
        overhead = _number(entry.get("overhead_seconds"))
        if overhead is not None and entry.get("mode") in DEFAULT_OVERHEAD:
            seen.setdefault(entry["mode"], []).append(overhead)
    return {mode: statistics.median(values) for mode, values in seen.items()}


@dataclass
class RunWork:
    """What one run will compute: training rows per task and evaluations."""

    rows: dict[str, float]
    evaluations: int
    steps: int


def run_work(config: TrainConfig, num_processes: int = 1) -> RunWork:
    """Training rows per task over the run and its evaluations, from the data's line counts (the
    first epoch's rows: dynamic sampling's later epochs move rows between tasks, and with
    --mtl-epoch target or --max-passes change their number too, which is not known before)."""
    available, _ = available_train_sizes(config)
    sizes = used_train_sizes(config, available)
    layout = first_epoch_layout(config, sizes, num_processes)
    if layout.rows is not None:
        per_task = [float(r) for r in layout.rows]
    else:  # homogeneous batches: each batch's task drawn with p
        per_task = [sum(layout.batch_sizes) * float(q) for q in first_probabilities(config, sizes)]
    steps = len(layout.batch_sizes)
    return RunWork({t: config.epochs * rows for t, rows in zip(config.tasks, per_task)},
                   config.epochs * len(eval_points(steps, config.eval_every)), config.epochs * steps)


def run_seconds(work: RunWork, speeds: Speeds, mode: str) -> float | None:
    """The estimated wall time of a run; None when a task's speed is unknown."""
    if any(t not in speeds.tasks for t in work.rows):
        return None
    train = sum(rows / speeds.tasks[t].train_examples_per_s for t, rows in work.rows.items())
    evaluate = work.evaluations * sum(speeds.tasks[t].eval_seconds for t in work.rows)
    wait = work.evaluations * max(speeds.tasks[t].checkpoint_seconds for t in work.rows)
    return train + evaluate + wait + speeds.overhead_for(mode)


def describe_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe_bytes(size: float | None) -> str:
    if size is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"
