"""What a value read from a run record (``result.json``) may be: one check per field of
``run_record.RunRecord``, each returning the value as a reader keeps it or raising
``InvalidRecord`` with a message that names the field. A record is read from disk, copied from
a cluster or a colleague: every value is checked against what a trainer writes before it
reaches a report, a terminal, a shell script or a computation."""

from __future__ import annotations

import math
import re
from typing import Any

from mtlvsift.commands import command_options
from mtlvsift.names import METHODS, SELECTION_SPLITS
from mtlvsift.params import MAX_SEED
from mtlvsift.run_folder import json_kind
from mtlvsift.scores import METRIC_NAME, is_number, is_score, score_range
from mtlvsift.tasks import GLUE_TASKS, USER_TASK_NAME, normalize_task_name

_VARIANT = re.compile(r"[A-Za-z0-9._+-]*")  # what run_folder.variant_suffix writes


class InvalidRecord(Exception):
    """A result.json that is not a readable run record; the message says why."""


def method(value: object) -> str:
    if value not in METHODS:
        raise InvalidRecord(f"unknown method {shown(value)} (expected one of {', '.join(METHODS)})")
    return value


def variant(value: object) -> str:
    value = value or ""
    if not isinstance(value, str) or not _VARIANT.fullmatch(value):
        raise InvalidRecord(f"'variant' {shown(value)} is not a run folder suffix")
    return value


def target(value: object, raw: dict) -> str | None:
    if value is None:
        if raw["method"] != "mtl_all":
            raise InvalidRecord(f"a {raw['method']} record without 'target'")
        return None
    return _task(value)


def support(value: object, raw: dict) -> tuple[str, ...]:
    support = tuple(_task(s) for s in a_list(value, "support"))
    if raw["method"] in ("stilts", "mtl") and not support:
        raise InvalidRecord(f"a {raw['method']} record without 'support'")
    return support


def tasks(value: object, raw: dict) -> tuple[str, ...]:
    tasks = tuple(_task(t) for t in a_list(value, "tasks"))
    if not tasks and raw["method"] == "mtl_all":  # read from its scores
        tasks = tuple(best_by_task(raw.get("best_by_task"), raw))
    return tasks


def seed(value: object) -> int:
    if not _is_seed(value):
        raise InvalidRecord("'seed' is missing or not an integer from 0 to 2**32 - 1")
    return value


def model(value: object) -> str:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise InvalidRecord("'model' is missing or holds control characters")
    return value


def sizes(value: object, key: str) -> dict[str, int]:
    return {_task(k): v for k, v in an_object(value, key).items()
            if isinstance(v, int) and not isinstance(v, bool) and v > 0}


def size_experiment(value: object) -> dict[str, Any]:
    found = an_object(value, "size_experiment")
    return {key: _number_or_none(found.get(key)) for key in ("target_fraction", "support_ratio")} | {
        "data_seed": found.get("data_seed") if _is_seed(found.get("data_seed")) else None}


def per_epoch(value: object, raw: dict, key: str, whole: bool) -> list[list] | None:
    """A number per task (in the record's task order) per epoch: rows (``whole``) or passes;
    None in a record written before the field."""
    if value is None:
        return None
    tasks_ = raw.get("tasks")
    width = len(tasks_) if isinstance(tasks_, list) else -1

    def fits(x: object) -> bool:
        if whole:
            return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEED
        return is_number(x) and 0 <= x <= MAX_SEED

    if not isinstance(value, list) or not all(
            isinstance(epoch, list) and len(epoch) == width and all(map(fits, epoch)) for epoch in value):
        raise InvalidRecord(f"'{key}' is not a list of one number per task per epoch")
    return value


def main_metrics(best_by_task: dict) -> dict[str, str]:
    return {task: best["metric"] for task, best in best_by_task.items()
            if isinstance(best.get("metric"), str) and METRIC_NAME.fullmatch(best["metric"])}


def best_by_task(value: object, raw: dict) -> dict[str, dict]:
    checked = {}
    for key, best in an_object(value, "best_by_task").items():
        task = _task(key)
        best = best if isinstance(best, dict) else {}
        metric = main_metrics({task: best}).get(task)
        if not is_score(best.get("score"), task, metric):
            raise InvalidRecord(f"{task}'s score in 'best_by_task' is {shown(best.get('score'))}, "
                                f"{_range(task, metric)}")
        checked[task] = best
    if raw["method"] == "mtl_all" and not checked:
        raise InvalidRecord("an mtl_all record without 'best_by_task' scores")
    return checked


def _metric_of(task: str, raw: dict) -> str | None:
    """A task's main metric as its best_by_task entry names it (what its scores are bounded by)."""
    best = (raw.get("best_by_task") or {}) if isinstance(raw.get("best_by_task"), dict) else {}
    entry = next((b for k, b in best.items() if isinstance(k, str) and normalize_task_name(k) == task), None)
    return main_metrics({task: entry}).get(task) if isinstance(entry, dict) else None


def best(value: object, raw: dict) -> dict | None:
    if raw["method"] == "mtl_all":
        return value if isinstance(value, dict) else None
    target = _task(raw.get("target"))
    score = value.get("score") if isinstance(value, dict) else None
    metric = _metric_of(target, raw)
    if not is_score(score, target, metric):
        raise InvalidRecord(f"'best.score' is {shown(score)}, {_range(target, metric)}")
    return value


def selection(value: object, raw: dict) -> dict[str, Any]:
    """The split a run selected its checkpoints on: dev (so is a record written before the field)
    or the held-out part of training, with its fraction and held-out rows per task; a holdout
    record's ``best`` and ``best_by_task`` entries each hold the ``selection_score`` they were
    selected by, a score of their task."""
    if value is None:
        return {"split": "dev", "fraction": None, "rows": {}}  # as run_record.dev_selection()
    found = an_object(value, "selection")
    split, fraction = found.get("split"), found.get("fraction")
    if split not in SELECTION_SPLITS:
        raise InvalidRecord(f"'selection.split' is {shown(split)}, not one of {', '.join(SELECTION_SPLITS)}")
    if split == "dev":
        return {"split": "dev", "fraction": None, "rows": sizes(found.get("rows"), "selection.rows")}
    if not is_number(fraction) or not 0 < fraction < 1:
        raise InvalidRecord(f"'selection.fraction' is {shown(fraction)}, not a fraction in (0, 1)")
    entries = {f"best_by_task.{k}": (k, v) for k, v in an_object(raw.get("best_by_task"), "best_by_task").items()}
    if raw["method"] != "mtl_all":
        entries["best"] = (raw.get("target"), raw.get("best"))
    for where, (task, entry) in entries.items():
        task = _task(task)
        score = entry.get("selection_score") if isinstance(entry, dict) else None
        if not is_score(score, task, _metric_of(task, raw)):
            raise InvalidRecord(f"'{where}.selection_score' is {shown(score)}, {_range(task, _metric_of(task, raw))}")
    return {"split": "holdout", "fraction": float(fraction), "rows": sizes(found.get("rows"), "selection.rows")}


def config(value: object, raw: dict) -> dict[str, Any]:
    config = an_object(value, "config")
    try:
        command_options(raw["method"], config)
    except ValueError as err:
        raise InvalidRecord(str(err)) from None
    return config


def baselines(value: object, raw: dict) -> dict[str, dict] | None:
    checked = {}
    for key, entry in an_object(value, "baselines").items():
        task = _task(key)
        score = entry.get("score") if isinstance(entry, dict) else None
        if score is None or (isinstance(score, float) and math.isnan(score)):
            continue  # no constant-prediction score (a correlation of a constant is undefined)
        if not is_score(score, task, _metric_of(task, raw)):
            raise InvalidRecord(f"{task}'s score in 'baselines' is {shown(score)}, "
                                f"{_range(task, _metric_of(task, raw))}")
        checked[task] = entry
    return checked or (None if value is None else {})


def start_model(value: object, raw: dict) -> dict[str, Any] | None:
    """A STILTs run's start model: its run folder, seed and dev score, each checked (the report
    compares and shows them)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRecord(f"'start_model' is {shown(value)}, not an object")
    run, seed, score = value.get("run"), value.get("seed"), value.get("score")
    if not isinstance(run, str) or not run or not run.isprintable():
        raise InvalidRecord(f"'start_model.run' is {shown(run)}, not a run folder")
    if not _is_seed(seed):
        raise InvalidRecord(f"'start_model.seed' is {shown(seed)}, not an integer from 0 to 2**32 - 1")
    support = a_list(raw.get("support"), "support")
    task = _task(support[0]) if support else None
    if task is not None and not is_score(score, task, _metric_of(task, raw)):
        raise InvalidRecord(f"'start_model.score' is {shown(score)}, {_range(task, _metric_of(task, raw))}")
    return value


def single_scores(value: object, raw: dict) -> dict[str, float] | None:
    """Dynamic sampling's single-task scores: a score of each task."""
    scores = {}
    for key, score in an_object(value, "single_scores").items():
        task = _task(key)
        if not is_score(score, task, _metric_of(task, raw)):
            raise InvalidRecord(f"{task}'s score in 'single_scores' is {shown(score)}, "
                                f"{_range(task, _metric_of(task, raw))}")
        scores[task] = float(score)
    return scores or None


def _is_seed(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def object_or_none(value: object, key: str) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidRecord(f"'{key}' is not an object")
    return value


def _range(task: str, metric: str | None = None) -> str:
    bounds = score_range(task, metric)
    return f"not a {task} score {bounds}" + (" (points are not scores)" if bounds != "finite" else "")


def shown(value: object) -> str:
    """A value read from a record, for a message: short, one line, never a nested structure."""
    if value is None:
        return "missing"
    if isinstance(value, (str, int, float)):
        return repr(value)[:40]
    return json_kind(value)


def _number_or_none(value: object) -> float | None:
    return float(value) if is_number(value) else None


def _task(value: object) -> str:
    """A GLUE task's canonical name, or a task-file task's name (``USER_TASK_NAME``); anything
    else makes the record invalid."""
    name = normalize_task_name(value) if isinstance(value, str) else None
    if name not in GLUE_TASKS and not (name and USER_TASK_NAME.fullmatch(name)):
        raise InvalidRecord(f"{shown(value)} is not a task name")
    return name


def choice(value: object, key: str, choices: tuple[str, ...]) -> str | None:
    value = value or None
    if value is not None and value not in choices:
        raise InvalidRecord(f"'{key}' is {shown(value)}, not one of {', '.join(choices)}")
    return value


def an_object(value: object, key: str) -> dict:
    value = value or {}
    if not isinstance(value, dict):
        raise InvalidRecord(f"'{key}' is not an object")
    return value


def a_list(value: object, key: str) -> list:
    value = value or []
    if not isinstance(value, list):
        raise InvalidRecord(f"'{key}' is not a list")
    return value
