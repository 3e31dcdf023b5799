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
from mtlvsift.run_folder import json_kind, run_name, variant_suffix
from mtlvsift.run_record import RunRecord, finished_runs, is_score
from mtlvsift.tasks import get_task, normalize_task_name
from mtlvsift.train.config import TrainConfig, support_examples_needed


def _single_runs(config: TrainConfig, task: str, cap: int | None) -> tuple[list[RunRecord], str]:
    """The finished single runs of ``task`` trained with ``cap`` examples, and the command
    (a loop over seeds) that makes them."""
    variant = variant_suffix({"n": cap, "ds": config.data_seed or None})
    folder = Path(config.output_dir) / "single" / run_name(task, variant)
    options = {"model": config.model, "max_train_examples": cap,
               "data_seed": config.data_seed or None}
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
    """The --single-scores file: a JSON object of task -> dev score in [0, 1] for exactly the
    run's tasks (a score in points or NaN would silently skew or later break the sampling)."""
    path = config.single_scores_file
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        raise MtlvsiftError(f"--single-scores {path}: cannot read it as JSON ({exc}).") from None
    example = json.dumps({task: 0.85 for task in config.tasks})

    def invalid(problem: str) -> MtlvsiftError:
        return MtlvsiftError(f"--single-scores {path}: {problem}. It must hold a JSON object of "
                             f"each task's single-task dev score in [0, 1] ([-1, 1] for MCC and "
                             f"Spearman), e.g. {example}.")

    if not isinstance(raw, dict):
        raise invalid(f"it holds {json_kind(raw)}, not an object")
    scores: dict[str, float] = {}
    for key, value in raw.items():
        name = normalize_task_name(key)
        if name not in config.tasks:
            raise invalid(f"'{key}' is not a task of this run (its tasks: {', '.join(config.tasks)})")
        if name in scores:
            raise invalid(f"{name} is named twice")
        if not is_score(value, name):
            low = get_task(name).lowest_score
            raise invalid(f"the score of {key} is {json.dumps(value)[:40]}, not a number in "
                          f"[{low:g}, 1] (66 points is 0.66)")
        scores[name] = float(value)
    missing = [t for t in config.tasks if t not in scores]
    if missing:
        raise invalid(f"it has no score for: {', '.join(missing)}")
    return {t: scores[t] for t in config.tasks}
