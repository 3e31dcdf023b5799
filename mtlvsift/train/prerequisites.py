"""What a run needs from other runs, resolved from its config before training starts.

- STILTs starts from the ``best/`` model of the best seed (by dev score) of the supporting task's
  single runs (size experiments: the single runs on the subsample that MTL draws).
- Dynamic sampling needs each task's single-task dev score: the mean over its single runs, or a
  ``--single-scores`` file.
Both read finished runs through ``mtlvsift.run_record``; a missing prerequisite is an error that
prints the command making it.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from mtlvsift.commands import train_command
from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import run_name, variant_suffix
from mtlvsift.run_record import RunRecord, finished_runs
from mtlvsift.tasks import get_task
from mtlvsift.train.config import TrainConfig, support_examples_needed


def _single_runs(config: TrainConfig, task: str, cap: int | None) -> tuple[list[RunRecord], str]:
    """The finished single runs of ``task`` trained with ``cap`` examples, and the command
    (a loop over seeds) that makes them."""
    variant = variant_suffix({"n": cap, "ds": config.data_seed or None})
    folder = Path(config.output_dir) / "single" / run_name(task, variant)
    source = get_task(task).source
    options = {"model": config.model, "max_train_examples": cap,
               "data_seed": config.data_seed or None,
               "task_file": [source.task_file] if source else None}
    return finished_runs(folder, config.model), train_command("single", task, options=options)


def with_start_model(config: TrainConfig, target_available: int) -> TrainConfig:
    """The config with ``init_model`` set: ``--init-from``, or for STILTs the best supporting seed."""
    if config.method != "stilts" or config.init_from is not None:
        return dataclasses.replace(config, init_model=config.init_from)
    support = config.support[0]
    cap = config.max_train_examples
    if config.support_ratio is not None:
        cap = support_examples_needed(config, target_available)
    records, command = _single_runs(config, support, cap)
    if not records:
        raise MtlvsiftError(
            f"STILTs needs a finished single-task run of {support} with model {config.model} in "
            f"{Path(config.output_dir) / 'single'}, and there is none. Make it first:\n  {command}\n"
            f"or pass --init-from PATH (a saved model folder)."
        )
    best = max(records, key=lambda r: r.score)
    return dataclasses.replace(config, init_model=str(best.folder / "best"))


def with_single_scores(config: TrainConfig) -> TrainConfig:
    """The config with ``single_scores`` set, for dynamic sampling (unchanged otherwise)."""
    if config.sampling != "dynamic":
        return config
    if config.single_scores_file:
        return dataclasses.replace(config, single_scores=_scores_file(config))
    scores, commands = {}, []
    for task in config.tasks:
        records, command = _single_runs(config, task, config.max_train_examples)
        if records:
            scores[task] = statistics.fmean(r.score for r in records)
        else:
            commands.append(command)
    if commands:
        missing = [t for t in config.tasks if t not in scores]
        raise MtlvsiftError(
            f"Dynamic sampling needs single-task dev scores, and {config.output_dir}/single has no "
            f"finished run of {', '.join(missing)} with model {config.model}. Make them with:\n"
            + "\n".join(f"  {c}" for c in commands)
            + "\nor pass --single-scores FILE (JSON {task: score}), or use --sampling size."
        )
    return dataclasses.replace(config, single_scores=scores)


def _scores_file(config: TrainConfig) -> dict[str, float]:
    path = config.single_scores_file
    try:
        scores = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MtlvsiftError(f"--single-scores {path}: cannot read it as JSON ({exc}).") from exc
    scores = {get_task(k).name: float(v) for k, v in scores.items()}
    missing = [t for t in config.tasks if t not in scores]
    if missing:
        raise MtlvsiftError(f"--single-scores {path} has no score for: {', '.join(missing)}.")
    return {t: scores[t] for t in config.tasks}
