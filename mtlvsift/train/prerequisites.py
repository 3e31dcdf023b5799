"""What a run needs from other runs, resolved from its config before training starts.

- STILTs starts from the ``best/`` model of the best seed (by selection score) of the supporting task's
  single runs (size experiments: the single runs on the subsample that MTL draws).
- Dynamic sampling needs each task's single-task dev score: the mean over its single runs, or a
  ``--single-scores`` file.
Both go by the score each single run selected its checkpoint on (``RunRecord.selection_score``:
dev, or under ``--select-on holdout`` the held-out part, which those single runs share with this
run: ``single_config_like`` passes the option on), so that dev never steers training there.
Both read finished runs through ``mtlvsift.run_record``, of the same model and protocol, and need
the complete set of ``--support-seeds`` (the authors' scripts waited for all five too), so that
every seed of a cell starts from the same model and reads the same scores whenever it runs. A
missing prerequisite is an error that prints the command making it; what was used is recorded.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from mtlvsift.commands import run_command
from mtlvsift.names import DEFAULT_SEEDS
from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import json_kind, model_slug
from mtlvsift.run_index import finished_runs
from mtlvsift.run_record import RunRecord
from mtlvsift.scores import is_score, score_range
from mtlvsift.tasks import normalize_task_name
from mtlvsift.train.config import TrainConfig, single_config_like, support_examples_needed


def _support_seeds(config: TrainConfig) -> list[int]:
    return list(config.support_seeds or DEFAULT_SEEDS)


def _single_runs(config: TrainConfig, task: str,
                 cap: int | None) -> tuple[list[RunRecord], str, str | None]:
    """The finished single runs of ``task`` (trained with ``cap`` examples) for the seeds of
    ``--support-seeds``, their folder (relative to the outputs) and, when seeds are missing, the
    loop that makes them."""
    single = single_config_like(config, task, cap)
    seeds = _support_seeds(config)
    folders = {seed: dataclasses.replace(single, options={**single.options, "seed": seed}).run_dir
               for seed in seeds}
    by_seed = {r.seed: r for r in finished_runs(folders.values(), config.model) if r.seed in seeds}
    missing = [s for s in seeds if s not in by_seed]
    # The single run's command, with every option of this run that the single run shares.
    command = run_command(single.as_dict(), missing) if missing else None
    found = [by_seed[s] for s in seeds if s in by_seed]
    # The seeds' folder: where the best one is (a tree of the layout before the model named a
    # folder is read where its runs are).
    where = next((r.folder.parent for r in found), folders[seeds[0]].parent)
    return found, str(where.relative_to(config.output_dir)), command


def _missing_runs_error(config: TrainConfig, need: str, runs: dict[str, tuple[list, str]],
                        alternative: str) -> MtlvsiftError:
    """One error for the tasks whose single runs lack seeds, with the loops that make the rest."""
    seeds = " ".join(map(str, _support_seeds(config)))
    lines = [f"{need} needs the single-task runs of every supporting seed ({seeds}; "
             f"--support-seeds) with model {config.model} in {Path(config.output_dir) / model_slug(config.model) / 'single'}:"]
    commands = []
    for task, (records, command) in runs.items():
        have = ", ".join(str(r.seed) for r in records) or "none"
        lines.append(f"  {task}: finished seeds: {have}.")
        commands.append(f"  {command}")
    return MtlvsiftError("\n".join([*lines, "Make the rest first:", *commands, alternative]))


def with_start_model(config: TrainConfig, target_available: int) -> TrainConfig:
    """The config with ``init_model`` set: ``--init-from``, or for STILTs the best supporting
    seed (ties: the lowest seed), also recorded as ``start_model`` (run, seed, dev score)."""
    if config.method != "stilts" or config.init_from is not None:
        return dataclasses.replace(config, init_model=config.init_from)
    support = config.support[0]
    records, _, command = _start_runs(config, target_available)
    if command:
        raise _missing_runs_error(config, "STILTs", {support: (records, command)},
                                  "or pass --init-from PATH (a saved model folder).")
    best = max(records, key=lambda r: (r.selection_score, -r.seed))
    start = {"run": best.folder.relative_to(config.output_dir).as_posix(), "seed": best.seed,
             "score": best.selection_score,
             "seeds": [r.seed for r in records]}
    return dataclasses.replace(config, init_model=str(best.folder / "best"), start_model=start)


def _start_runs(config: TrainConfig, target_available: int) -> tuple[list[RunRecord], str, str | None]:
    """The single runs a STILTs config starts from (size experiments: on MTL's subsample)."""
    cap = config.max_train_examples
    if config.support_ratio is not None:
        cap = support_examples_needed(config, target_available)
    return _single_runs(config, config.support[0], cap)


def start_model_command(config: TrainConfig, target_available: int) -> str | None:
    """The loop that makes the single runs a STILTs config lacks; None when they are finished."""
    return _start_runs(config, target_available)[2]


def with_single_scores(config: TrainConfig) -> TrainConfig:
    """The config with ``single_scores`` set, for dynamic sampling (unchanged otherwise), and
    ``single_scores_from``: the runs (and seeds) or the file they came from."""
    if config.sampling != "dynamic":
        return config
    if config.single_scores_file:
        return dataclasses.replace(config, single_scores=_scores_file(config),
                                   single_scores_from={"file": str(config.single_scores_file)})
    scores, runs, lacking = {}, {}, {}
    for task in config.tasks:
        records, runs[task], command = _single_runs(config, task, config.max_train_examples)
        if command:
            lacking[task] = (records, command)
        else:
            scores[task] = statistics.fmean(r.selection_score for r in records)
    if lacking:
        raise _missing_runs_error(config, "Dynamic sampling", lacking,
                                  "or pass --single-scores FILE (JSON {task: score}), or use "
                                  "--sampling size.")
    source = {"runs": runs, "seeds": _support_seeds(config)}
    return dataclasses.replace(config, single_scores=scores, single_scores_from=source)


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
            raise invalid(f"the score of {key} is {json.dumps(value)[:40]}, not a number "
                          f"{score_range(name)} (66 points is 0.66)")
        scores[name] = float(value)
    missing = [t for t in config.tasks if t not in scores]
    if missing:
        raise invalid(f"it has no score for: {', '.join(missing)}")
    return {t: scores[t] for t in config.tasks}
