"""A run's plan, resolved before (or instead of) training: the arithmetic of ``--dry-run`` and
``--plan-json`` (shown by ``plan_display``) and of the loop.

Everything a run will do that can be known up front: its folder, the training sizes after
subsampling (lines of the TSV files, or rows of a task file's data read by its reader; never
tokenized), the first epoch's probabilities, quotas and rows, the batches of every epoch (unknown, ``None``, where dynamic
sampling under ``--protocol original`` sets an epoch's length from dev scores), the LR schedule's
steps, the evaluations, the STILTs start model and the single-task scores. The training loop
takes its epoch settings, LR steps and evaluation points from here too, so the plan and the run
cannot disagree. Reads files, writes nothing.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import AUTHORS_TASK_ORDER, get_task
from mtlvsift.train.config import TrainConfig, used_train_size
from mtlvsift.train.data.glue import resolve_data_dir, train_rows
from mtlvsift.train.data.holdout import holdout_size
from mtlvsift.train.prerequisites import with_single_scores, with_start_model
from mtlvsift.train.batches.probabilities import task_probabilities
from mtlvsift.train.batches.sampling import EpochLayout, epoch_layout, epoch_schedule, passes, schedule_counts


def eval_points(steps_per_epoch: int, eval_every: float) -> set[int]:
    """Batch counts within an epoch after which to evaluate: every ``eval_every`` and the end."""
    count = math.ceil(1 / eval_every - 1e-9)
    points = {min(steps_per_epoch, max(1, math.ceil(k * eval_every * steps_per_epoch - 1e-9)))
              for k in range(1, count + 1)}
    return points | {steps_per_epoch}


def available_train_sizes(config: TrainConfig) -> tuple[list[int], str]:
    """Each task's training examples before subsampling, and where the numbers come from."""
    data_dir = resolve_data_dir(config.data_dir)
    tasks = [get_task(t) for t in config.tasks]
    sources = []
    if any(t.source is None for t in tasks):
        sources.append("GLUE's official sizes (no --data-dir)" if data_dir is None
                       else f"lines of the training files in {data_dir}")
    if any(t.source is not None for t in tasks):
        sources.append("rows of the task files' training data")
    return [train_rows(t, data_dir) for t in tasks], "; ".join(sources)


def used_train_sizes(config: TrainConfig, available: list[int]) -> list[int]:
    """What the run trains on (the target, when there is one, comes first): the training files'
    ``available`` rows less the held-out part (--select-on holdout), then subsampled."""
    target = available[0] if config.target else 0
    return [used_train_size(config, t, n, target) for t, n in zip(config.tasks, available)]


def with_prerequisites(config: TrainConfig, available: list[int] | None = None) -> TrainConfig:
    """The single-task scores and the STILTs start model resolved (``prerequisites``) before
    anything is tokenized or written; ``available``: the training sizes, counted if needed."""
    config = with_single_scores(config)
    if config.method == "stilts" and config.support_ratio is not None and available is None:
        available = available_train_sizes(config)[0]
    return with_start_model(config, available[0] if available else 0)


def epoch_settings(config: TrainConfig) -> dict[str, Any]:
    """The arguments of ``epoch_layout``/``epoch_schedule`` that come from the config."""
    names = list(config.tasks)
    ranks = {t: i for i, t in enumerate(AUTHORS_TASK_ORDER)}
    order = sorted(range(len(names)), key=lambda i: (ranks.get(names[i], len(ranks)), i))
    return {"batching": config.batching or "heterogeneous", "protocol": config.protocol,
            "sampling": config.sampling, "order": order, "mtl_epoch": config.mtl_epoch or "sum",
            "max_passes": config.max_passes}


def first_probabilities(config: TrainConfig, sizes: list[int]) -> np.ndarray:
    """The first epoch's p (dynamic sampling starts with ``size``; one task: [1])."""
    return task_probabilities(config.sampling or "size", sizes, 0, temperature=config.temperature)


def epoch_lengths_vary(config: TrainConfig, num_tasks: int) -> bool:
    """Whether later epochs' lengths depend on dev scores: dynamic sampling under the original
    protocol (the epoch ends when a task's quota runs out), or under the standard one with an
    epoch that shows the target once or a cap on passes."""
    if config.sampling != "dynamic" or num_tasks < 2:
        return False
    return config.protocol == "original" or config.mtl_epoch == "target" or config.max_passes is not None


def first_epoch_layout(config: TrainConfig, sizes: list[int], num_processes: int = 1) -> EpochLayout:
    return epoch_layout(sizes, first_probabilities(config, sizes), config.batch_size,
                        num_processes=num_processes, **epoch_settings(config))


def passes_per_epoch(config: TrainConfig, sizes: list[int], num_processes: int = 1) -> list[list[float] | None]:
    """Each epoch's passes over each task's data (rows / its training size), as the loop will
    show them; None for an epoch whose p depends on dev scores (dynamic sampling after the first).
    Homogeneous batches draw each batch's task, so their rows are counted from each epoch's
    schedule for this seed."""
    p = first_probabilities(config, sizes)
    layout = first_epoch_layout(config, sizes, num_processes)
    known = config.sampling != "dynamic" or len(sizes) < 2
    result: list[list[float] | None] = []
    for epoch in range(config.epochs):
        if epoch > 0 and not known:
            result.append(None)
        elif layout.rows is not None:
            result.append(passes(layout.rows, sizes))
        else:
            schedule = epoch_schedule(sizes, p, config.batch_size, config.seed, epoch,
                                      num_processes=num_processes, **epoch_settings(config))
            result.append(passes(schedule_counts(schedule, len(sizes)), sizes))
    return result


def lr_schedule_steps(config: TrainConfig, sizes: list[int], num_processes: int = 1) -> int:
    """Steps of the linear LR schedule: the epochs times the first epoch's batches. The original
    code's rule; under the standard protocol every epoch has that length anyway."""
    return config.epochs * len(first_epoch_layout(config, sizes, num_processes).batch_sizes)


def check_batch_options(config: TrainConfig, sizes: list[int], num_processes: int) -> None:
    """The options that need the data's size (``sizes``: each task's training examples), checked
    by the run before its folder is claimed and by the dry run (the same error)."""
    steps = len(first_epoch_layout(config, sizes, num_processes).batch_sizes)
    if config.eval_every * steps < 1 - 1e-9:
        least = math.ceil(1e4 / steps) / 1e4
        raise MtlvsiftError(
            f"--eval-every {config.eval_every:g} is less than one training step: an epoch has "
            f"{steps} steps here, so evaluate every 1/{steps} of an epoch or more (--eval-every "
            f"{least:g}).")
    rows = math.ceil(config.batch_size / num_processes)
    if config.grad_accum > rows:
        raise MtlvsiftError(
            f"--grad-accum {config.grad_accum} asks for more micro-batches than the {rows} rows "
            f"each process gets of a batch of {config.batch_size}; use at most {rows}.")


def make_plan(config: TrainConfig, num_processes: int | None = None) -> dict[str, Any]:
    """The plan of the run ``config`` describes (prerequisites resolved: a missing one raises)."""
    if num_processes is None:
        num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    available, source = available_train_sizes(config)
    config = with_prerequisites(config, available)
    sizes = used_train_sizes(config, available)
    check_batch_options(config, sizes, num_processes)
    p = first_probabilities(config, sizes)
    layout = first_epoch_layout(config, sizes, num_processes)
    first = len(layout.batch_sizes)
    varies = epoch_lengths_vary(config, len(sizes))
    batches = [first] + [None if varies else first] * (config.epochs - 1)

    evaluations = [None if b is None else len(eval_points(b, config.eval_every)) for b in batches]
    if layout.quotas is not None:
        quotas = layout.quotas.tolist()
    elif layout.rows is not None:  # standard: each task's rows per batch on average (p * B uncapped)
        quotas = [round(int(r) * config.batch_size / int(layout.rows.sum()), 3) for r in layout.rows]
    else:
        quotas = None
    return {
        "method": config.method, "name": config.name, "run_dir": str(config.run_dir),
        "protocol": config.protocol, "sampling": config.sampling, "batching": config.batching,
        "dynamic_rule": config.dynamic_rule, "model": config.model, "seed": config.seed,
        "tasks": list(config.tasks), "available_train_sizes": available, "train_sizes": sizes,
        "sizes_from": source, "batch_size": config.batch_size, "epochs": config.epochs,
        "num_processes": num_processes, "probabilities": [float(x) for x in p],
        "quotas": quotas, "rows_per_epoch": None if layout.rows is None else layout.rows.tolist(),
        "batches_per_epoch": batches, "passes_per_epoch": passes_per_epoch(config, sizes, num_processes),
        "lr_schedule_steps": lr_schedule_steps(config, sizes, num_processes),
        "evaluations_per_epoch": evaluations,
        "evaluations": None if None in evaluations else sum(evaluations),
        "init_model": config.init_model, "start_model": config.start_model,
        "single_scores": config.single_scores, "single_scores_from": config.single_scores_from,
        "select_on": config.select_on, "holdout_rows": holdout_rows(config, available),
    }


def holdout_rows(config: TrainConfig, available: list[int]) -> list[int] | None:
    """Each task's held-out rows under --select-on holdout (carved from the file's rows before
    any subsampling; ``train_sizes`` are what is left to train on), else None."""
    if config.select_on != "holdout":
        return None
    return [holdout_size(t, n, config.holdout_fraction) for t, n in zip(config.tasks, available)]


