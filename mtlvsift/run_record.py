"""The run record (``result.json``): the one contract between the trainer and the report.

Written once, atomically, when a run completes (``build_record`` + ``write_record``); read and
validated by ``read_record``, the only reader: the report (``run_index.discover``), STILTs (the best
supporting seed) and dynamic sampling (mean single-task scores) all go through it. Bump
``SCHEMA`` on any change a reader must know about. Imports neither torch nor transformers.

``compare.py`` reads nothing else, so it works on results copied from a cluster. Folder names are
never parsed: every fact comes from the record's fields. A folder holding ``config.json`` but no
``result.json`` is a run that started and has not finished (in progress, or interrupted).
"""

from __future__ import annotations

import json
import math
import platform
import re
import statistics
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mtlvsift.commands import command_options
from mtlvsift.names import BATCHINGS, DEFAULT_PROTOCOL, METHODS, PROTOCOLS, SAMPLINGS
from mtlvsift.params import MAX_SEED
from mtlvsift.scores import METRIC_NAME, is_number as _is_number, is_score, score_range
from mtlvsift.run_folder import atomic_write_json, json_kind
from mtlvsift.tasks import GLUE_TASKS, USER_TASK_NAME, get_task, normalize_task_name

SCHEMA = 1
MEAN_MAIN = "mean_main"  # MTL_All selects its single best model by the mean main score
_VARIANT = re.compile(r"[A-Za-z0-9._+-]*")  # what run_folder.variant_suffix writes


# --------------------------------------------------------------------------- writing


def selection_entry(entry: dict[str, Any], task: str | None) -> dict[str, Any]:
    """One evaluation seen as a candidate best: by ``task``'s main metric, or by the mean over
    every task's main metric when ``task`` is None (MTL_All)."""
    metrics = entry["metrics"]
    if task is None:
        score = statistics.fmean(get_task(t).main_score(metrics[t]) for t in metrics)
        metric = MEAN_MAIN
    else:
        metric = get_task(task).main_metric
        score = get_task(task).main_score(metrics[task])
    return {"step": entry["step"], "epoch": entry["epoch"], "task": task, "metric": metric,
            "score": score, "metrics": metrics}


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("mtlvsift", "torch", "transformers", "accelerate", "datasets", "evaluate"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def build_record(config, progress, train_sizes: dict[str, int], available: dict[str, int],
                 device: dict[str, Any], baselines: dict[str, dict] | None = None) -> dict[str, Any]:
    """The record of a completed run: ``config`` a TrainConfig, ``progress`` its final Progress,
    ``device`` the accelerator's facts (device, num_processes, mixed_precision), ``baselines``
    each task's constant-prediction dev result (``{"prediction": ..., "metrics": {...},
    "score": main score}``: the majority class, or the mean training label of a regression)."""
    seconds = progress.train_seconds
    return {
        "schema": SCHEMA,
        "method": config.method,
        "name": config.name,
        "variant": config.variant,
        "target": config.target,
        "support": config.support,
        "tasks": config.tasks,
        "seed": config.seed,
        "model": config.model,
        "protocol": config.protocol,
        "sampling": config.sampling,
        "batching": config.batching,
        "train_sizes": train_sizes,
        "available_train_sizes": available,
        "size_experiment": {"target_fraction": config.target_fraction,
                            "support_ratio": config.support_ratio, "data_seed": config.data_seed},
        "init_model": config.init_model,
        "start_model": config.start_model,
        "single_scores": config.single_scores,
        "data_fingerprints": config.data_fingerprints,  # task -> split -> sha256 of the file
        "single_scores_from": config.single_scores_from,
        "config": config.as_dict(),
        "baselines": baselines,
        "best": progress.best,
        "best_by_task": progress.best_by_task,
        "history": progress.history,
        "probabilities": progress.probabilities,
        "batches_per_epoch": [progress.epoch_batches[e] for e in sorted(progress.epoch_batches, key=int)],
        "timing": {
            "train_seconds": seconds,
            "eval_seconds": progress.eval_seconds,
            "save_seconds": progress.save_seconds,
            "checkpoint_blocked_seconds": progress.checkpoint_blocked_seconds,
            "examples": progress.examples,
            "examples_per_second": progress.examples / seconds if seconds > 0 else None,
            "steps": progress.step,
            "host": platform.node(),  # the grid's ETA reads rates measured on the same machine
            **device,
        },
        "versions": _versions(),
    }


def write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_json(path, record)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunRecord:
    """The fields of one ``result.json`` that the report needs (scores in [0, 1], as written)."""

    path: Path
    method: str
    name: str
    variant: str
    target: str | None  # None for mtl_all
    support: tuple[str, ...]
    tasks: tuple[str, ...]
    seed: int
    model: str
    sampling: str | None
    train_sizes: dict[str, int]
    target_fraction: float | None
    support_ratio: float | None
    score: float | None  # best.score: the target's main metric at the selected step
    task_scores: dict[str, float]  # best_by_task[task].score, each task at its own best step
    main_metrics: dict[str, str] = field(default_factory=dict)  # best_by_task[task].metric
    task_files: tuple[str, ...] = ()  # config.task_files: where its task-file tasks were defined
    protocol: str = DEFAULT_PROTOCOL  # records from before the protocol option: standard
    start_model: tuple | None = None  # STILTs: (run, seed, score) of the supporting run started from
    single_scores: tuple | None = None  # dynamic sampling: ((task, score), ...) read by the run
    # The options that make this run again (commands.command_options of its config, checked); the
    # report's commands for missing runs of the same variant start from them.
    options: dict[str, Any] = field(default_factory=dict)
    # Each task's main dev score of a constant prediction (majority class; records before the
    # field: empty).
    baselines: dict[str, float] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The run folder (``best/`` of the run lies there)."""
        return self.path.parent

    @property
    def is_size_experiment(self) -> bool:
        return self.target_fraction is not None or self.support_ratio is not None


class InvalidRecord(Exception):
    """A result.json that is not a readable run record; the message says why."""


def load(path: str | Path) -> dict[str, Any]:
    """The raw fields of one result.json of this schema; anything else raises ``InvalidRecord``."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidRecord(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidRecord(f"not valid JSON, corrupt or half-written ({err})") from None
    except (ValueError, RecursionError) as err:  # nested too deep, a number too long
        raise InvalidRecord(f"not a run record ({type(err).__name__}: {str(err)[:100]})") from None
    if not isinstance(raw, dict) or "schema" not in raw or "method" not in raw:
        raise InvalidRecord("not a mtlvsift run record (no 'schema' and 'method' fields)")
    if raw["schema"] != SCHEMA:
        raise InvalidRecord(f"schema {_shown(raw['schema'])} is not supported (this version "
                            f"reads {SCHEMA})")
    return raw


def read_record(path: Path) -> RunRecord:
    """Parse and check one result.json; a file that is not a valid record raises ``InvalidRecord``."""
    raw = load(path)
    method = raw["method"]
    if method not in METHODS:
        raise InvalidRecord(f"unknown method {_shown(method)} (expected one of {', '.join(METHODS)})")

    # Every field that reaches the report, the terminal or missing.sh is checked against what a
    # trainer can write: task, sampling and batching names, numbers, a printable model name.
    target = _task(raw["target"]) if raw.get("target") is not None else None
    support = tuple(_task(s) for s in _list(raw, "support"))
    tasks = tuple(_task(t) for t in _list(raw, "tasks"))
    seed = raw.get("seed")
    model = raw.get("model")
    if not _is_seed(seed):
        raise InvalidRecord("'seed' is missing or not an integer from 0 to 2**32 - 1")
    if not isinstance(model, str) or not model or not model.isprintable():
        raise InvalidRecord("'model' is missing or holds control characters")
    sampling = _choice(raw, "sampling", SAMPLINGS)
    _choice(raw, "batching", BATCHINGS)
    variant = raw.get("variant") or ""
    if not isinstance(variant, str) or not _VARIANT.fullmatch(variant):
        raise InvalidRecord(f"'variant' {_shown(variant)} is not a run folder suffix")

    task_scores: dict[str, float] = {}
    main_metrics: dict[str, str] = {}
    for key, best in _dict(raw, "best_by_task").items():
        task = _task(key)
        best = best if isinstance(best, dict) else {}
        metric = best.get("metric")
        if isinstance(metric, str) and METRIC_NAME.fullmatch(metric):
            main_metrics[task] = metric
        value = best.get("score")
        if not is_score(value, task, main_metrics.get(task)):
            raise InvalidRecord(f"{task}'s score in 'best_by_task' is {_shown(value)}, "
                                f"{_range(task, main_metrics.get(task))}")
        task_scores[task] = float(value)

    score = None
    if method == "mtl_all":
        if not tasks:
            tasks = tuple(task_scores)
        if not task_scores:
            raise InvalidRecord("an mtl_all record without 'best_by_task' scores")
    else:
        if target is None:
            raise InvalidRecord(f"a {method} record without 'target'")
        best = raw.get("best")
        score = best.get("score") if isinstance(best, dict) else None
        metric = main_metrics.get(target)
        if not is_score(score, target, metric):
            raise InvalidRecord(f"'best.score' is {_shown(score)}, {_range(target, metric)}")
        score = float(score)
        if method != "single" and not support:
            raise InvalidRecord(f"a {method} record without 'support'")

    size_exp = _dict(raw, "size_experiment")
    sizes = _dict(raw, "train_sizes")
    try:
        options = command_options(method, _dict(raw, "config"))
    except ValueError as err:
        raise InvalidRecord(str(err)) from None
    baselines: dict[str, float] = {}
    for key, entry in _dict(raw, "baselines").items():
        task = _task(key)
        value = entry.get("score") if isinstance(entry, dict) else None
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # no constant-prediction score (a correlation of a constant is undefined)
        if not is_score(value, task, main_metrics.get(task)):
            raise InvalidRecord(f"{task}'s score in 'baselines' is {_shown(value)}, "
                                f"{_range(task, main_metrics.get(task))}")
        baselines[task] = float(value)
    return RunRecord(
        path=path,
        method=method,
        name=raw["name"] if isinstance(raw.get("name"), str) else "",
        variant=variant,
        target=target,
        support=support,
        tasks=tasks,
        seed=seed,
        model=model,
        sampling=sampling,
        protocol=_choice(raw, "protocol", PROTOCOLS) or DEFAULT_PROTOCOL,
        start_model=_start_model(raw.get("start_model"), support, main_metrics),
        single_scores=_single_scores(raw, main_metrics),
        train_sizes={_task(k): v for k, v in sizes.items()
                     if isinstance(v, int) and not isinstance(v, bool) and v > 0},
        target_fraction=_number_or_none(size_exp.get("target_fraction")),
        support_ratio=_number_or_none(size_exp.get("support_ratio")),
        score=score,
        task_scores=task_scores,
        main_metrics=main_metrics,
        task_files=tuple(f for f in _list(_dict(raw, "config"), "task_files") if isinstance(f, str)),
        options=options,
        baselines=baselines,
    )


def _start_model(value: object, support: tuple[str, ...], metrics: dict[str, str]) -> tuple | None:
    """What identifies a start model across seeds: its run folder, seed and dev score (each
    checked: the report compares and shows them)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRecord(f"'start_model' is {_shown(value)}, not an object")
    run, seed, score = value.get("run"), value.get("seed"), value.get("score")
    if not isinstance(run, str) or not run or not run.isprintable():
        raise InvalidRecord(f"'start_model.run' is {_shown(run)}, not a run folder")
    if not _is_seed(seed):
        raise InvalidRecord(f"'start_model.seed' is {_shown(seed)}, not an integer from 0 to 2**32 - 1")
    task = support[0] if support else None
    if task is not None and not is_score(score, task, metrics.get(task)):
        raise InvalidRecord(f"'start_model.score' is {_shown(score)}, {_range(task, metrics.get(task))}")
    return (run, seed, score)


def _single_scores(raw: dict, metrics: dict[str, str]) -> tuple | None:
    """Dynamic sampling's single-task scores: ((task, score), ...), each a score of its task."""
    scores = []
    for key, value in _dict(raw, "single_scores").items():
        task = _task(key)
        if not is_score(value, task, metrics.get(task)):
            raise InvalidRecord(f"{task}'s score in 'single_scores' is {_shown(value)}, "
                                f"{_range(task, metrics.get(task))}")
        scores.append((task, float(value)))
    return tuple(sorted(scores)) or None


def _is_seed(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def _range(task: str, metric: str | None = None) -> str:
    bounds = score_range(task, metric)
    return f"not a {task} score {bounds}" + (" (points are not scores)" if bounds != "finite" else "")


def _shown(value: object) -> str:
    """A value read from a record, for a message: short, one line, never a nested structure."""
    if value is None:
        return "missing"
    if isinstance(value, (str, int, float)):
        return repr(value)[:40]
    return json_kind(value)


def _number_or_none(value: object) -> float | None:
    return float(value) if _is_number(value) else None


def _task(value: object) -> str:
    """A GLUE task's canonical name, or a task-file task's name (``USER_TASK_NAME``); anything
    else makes the record invalid."""
    name = normalize_task_name(value) if isinstance(value, str) else None
    if name not in GLUE_TASKS and not (name and USER_TASK_NAME.fullmatch(name)):
        raise InvalidRecord(f"{_shown(value)} is not a task name")
    return name


def _choice(raw: dict, key: str, choices: tuple[str, ...]) -> str | None:
    value = raw.get(key) or None
    if value is not None and value not in choices:
        raise InvalidRecord(f"'{key}' is {_shown(value)}, not one of {', '.join(choices)}")
    return value


def _dict(raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidRecord(f"'{key}' is not an object")
    return value


def _list(raw: dict, key: str) -> list:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise InvalidRecord(f"'{key}' is not a list")
    return value
