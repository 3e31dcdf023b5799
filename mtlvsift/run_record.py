"""The run record (``result.json``): the one contract between the trainer and the report.

Written once, atomically, when a run completes (``build_record`` + ``write_record``); read and
validated by ``read_record``, the only reader: the report (``discover``), STILTs (the best
supporting seed) and dynamic sampling (mean single-task scores) all go through it. Bump
``SCHEMA`` on any change a reader must know about. Imports neither torch nor transformers.

``compare.py`` reads nothing else, so it works on results copied from a cluster. Folder names are
never parsed: every fact comes from the record's fields. A folder holding ``config.json`` but no
``result.json`` is a run that started and has not finished (in progress, or interrupted).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import CONFIG_FILE, RESULT_FILE, atomic_write_json
from mtlvsift.tasks import get_task, normalize_task_name

SCHEMA = 1
METHODS = ("single", "stilts", "mtl", "mtl_all")
MEAN_MAIN = "mean_main"  # MTL_All selects its single best model by the mean main score
METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_. -]{0,63}")  # what a report may show of one


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
                 device: dict[str, Any]) -> dict[str, Any]:
    """The record of a completed run: ``config`` a TrainConfig, ``progress`` its final Progress,
    ``device`` the accelerator's facts (device, num_processes, mixed_precision)."""
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
        "sampling": config.sampling,
        "batching": config.batching,
        "train_sizes": train_sizes,
        "available_train_sizes": available,
        "size_experiment": {"target_fraction": config.target_fraction,
                            "support_ratio": config.support_ratio, "data_seed": config.data_seed},
        "init_model": config.init_model,
        "single_scores": config.single_scores,
        "config": config.as_dict(),
        "best": progress.best,
        "best_by_task": progress.best_by_task,
        "history": progress.history,
        "probabilities": progress.probabilities,
        "timing": {
            "train_seconds": seconds,
            "eval_seconds": progress.eval_seconds,
            "save_seconds": progress.save_seconds,
            "examples": progress.examples,
            "examples_per_second": progress.examples / seconds if seconds > 0 else None,
            "steps": progress.step,
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

    @property
    def folder(self) -> Path:
        """The run folder (``best/`` of the run lies there)."""
        return self.path.parent

    @property
    def is_size_experiment(self) -> bool:
        return self.target_fraction is not None or self.support_ratio is not None


@dataclass(frozen=True)
class InProgressRun:
    path: Path  # the run folder
    modified: float  # newest modification time of its files (seconds since the epoch)

    def age(self, now: float | None = None) -> str:
        """How long ago the run last wrote anything, e.g. '5 min ago'."""
        seconds = max(0.0, (time.time() if now is None else now) - self.modified)
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{int(seconds // size)} {unit} ago"
        return f"{int(seconds)} s ago"


@dataclass
class Discovery:
    root: Path
    records: list[RunRecord] = field(default_factory=list)
    in_progress: list[InProgressRun] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return sorted({r.model for r in self.records})


class InvalidRecord(Exception):
    """A result.json that is not a readable run record; the message says why."""


def discover(root: str | Path) -> Discovery:
    """Every run record and every unfinished run under ``root``, with one warning per bad file."""
    root = Path(root)
    found = Discovery(root=root)
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if RESULT_FILE in filenames:
            try:
                found.records.append(read_record(here / RESULT_FILE))
            except InvalidRecord as err:
                found.warnings.append(f"skipped {here / RESULT_FILE}: {err}")
            dirnames[:] = []  # a run folder's best/ and state/ hold model files, not runs
        elif CONFIG_FILE in filenames:
            found.in_progress.append(InProgressRun(here, _newest_mtime(here, filenames)))
            dirnames[:] = []
        else:
            dirnames.sort()  # a stable order, whatever the file system's
    found.records.sort(key=lambda r: str(r.path))
    found.in_progress.sort(key=lambda r: str(r.path))
    return found


def require_records(found: Discovery) -> None:
    """Raise the one clear error for an outputs folder without any finished run."""
    if found.records:
        return
    where = found.root.resolve()
    if not found.root.is_dir():
        lead = f"No outputs folder at {where}."
    else:
        lead = f"No run records (result.json) under {where}."
        if found.in_progress:
            lead += f" {len(found.in_progress)} run(s) have started but not finished."
    raise MtlvsiftError(
        f"{lead} Train runs first, e.g. `accelerate launch scripts/train_stilts.py --target rte "
        f"--seed 0` (or train_mtl.py / train_mtl_all.py), or point --outputs at the folder "
        f"that holds them."
    )


def load(path: str | Path) -> dict[str, Any]:
    """The raw fields of one result.json of this schema; anything else raises ``InvalidRecord``."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidRecord(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidRecord(f"not valid JSON, corrupt or half-written ({err})") from None
    if not isinstance(raw, dict) or "schema" not in raw or "method" not in raw:
        raise InvalidRecord("not a mtlvsift run record (no 'schema' and 'method' fields)")
    if raw["schema"] != SCHEMA:
        raise InvalidRecord(f"schema {raw['schema']!r} is not supported (this version reads {SCHEMA})")
    return raw


def read_record(path: Path) -> RunRecord:
    """Parse and check one result.json; a file that is not a valid record raises ``InvalidRecord``."""
    raw = load(path)
    method = raw["method"]
    if method not in METHODS:
        raise InvalidRecord(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")

    target = _task_or_none(raw.get("target"))
    support = tuple(normalize_task_name(str(s)) for s in _list(raw, "support"))
    tasks = tuple(normalize_task_name(str(t)) for t in _list(raw, "tasks"))
    seed = raw.get("seed")
    model = raw.get("model")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InvalidRecord("'seed' is missing or not an integer")
    if not isinstance(model, str) or not model:
        raise InvalidRecord("'model' is missing")

    task_scores: dict[str, float] = {}
    main_metrics: dict[str, str] = {}
    for task, best in _dict(raw, "best_by_task").items():
        value = best.get("score") if isinstance(best, dict) else None
        if _is_number(value):
            task_scores[normalize_task_name(task)] = float(value)
        metric = best.get("metric") if isinstance(best, dict) else None
        if isinstance(metric, str) and METRIC_NAME.fullmatch(metric):
            main_metrics[normalize_task_name(task)] = metric

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
        if not _is_number(score):
            raise InvalidRecord("'best.score' is missing or not a finite number")
        score = float(score)
        if method != "single" and not support:
            raise InvalidRecord(f"a {method} record without 'support'")

    size_exp = _dict(raw, "size_experiment")
    sizes = _dict(raw, "train_sizes")
    return RunRecord(
        path=path,
        method=method,
        name=str(raw.get("name") or ""),
        variant=str(raw.get("variant") or ""),
        target=target,
        support=support,
        tasks=tasks,
        seed=seed,
        model=model,
        sampling=raw.get("sampling") or None,
        train_sizes={normalize_task_name(k): int(v) for k, v in sizes.items() if _is_number(v)},
        target_fraction=_number_or_none(size_exp.get("target_fraction")),
        support_ratio=_number_or_none(size_exp.get("support_ratio")),
        score=score,
        task_scores=task_scores,
        main_metrics=main_metrics,
        task_files=tuple(f for f in _list(_dict(raw, "config"), "task_files") if isinstance(f, str)),
    )


def _newest_mtime(folder: Path, filenames: list[str]) -> float:
    times = []
    for name in filenames:
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:  # a file removed while we looked
            pass
    return max(times, default=time.time())


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )


def _number_or_none(value: object) -> float | None:
    return float(value) if _is_number(value) else None


def _task_or_none(value: object) -> str | None:
    return normalize_task_name(value) if isinstance(value, str) and value else None


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


# --------------------------------------------------------------------------- finding runs


def finished_runs(folder: str | Path, model: str) -> list[RunRecord]:
    """The valid records ``<folder>/seed-*/result.json`` of one model (invalid ones skipped)."""
    records = []
    for result in sorted(Path(folder).glob(f"seed-*/{RESULT_FILE}")):
        try:
            record = read_record(result)
        except InvalidRecord:
            continue
        if record.model == model:
            records.append(record)
    return records
