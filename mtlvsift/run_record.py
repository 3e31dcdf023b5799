"""Discovery and reading of run records (``result.json``) under an outputs folder.

``compare.py`` reads nothing else, so it works on results copied from a cluster. Folder names are
never parsed: every fact comes from the record's fields. A folder holding ``config.json`` but no
``result.json`` is a run that started and has not finished (in progress, or interrupted).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import CONFIG_FILE, RESULT_FILE, SCHEMA  # the writer's names, defined once
from mtlvsift.tasks import normalize_task_name

METHODS = ("single", "stilts", "mtl", "mtl_all")


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


class _Invalid(Exception):
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
            except _Invalid as err:
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


def read_record(path: Path) -> RunRecord:
    """Parse and check one result.json; a file that is not a valid record raises ``_Invalid``."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, UnicodeDecodeError) as err:
        raise _Invalid(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise _Invalid(f"not valid JSON, corrupt or half-written ({err})") from None
    if not isinstance(raw, dict) or "schema" not in raw or "method" not in raw:
        raise _Invalid("not a mtlvsift run record (no 'schema' and 'method' fields)")
    if raw["schema"] != SCHEMA:
        raise _Invalid(f"schema {raw['schema']!r} is not supported (this version reads {SCHEMA})")
    method = raw["method"]
    if method not in METHODS:
        raise _Invalid(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")

    target = _task_or_none(raw.get("target"))
    support = tuple(normalize_task_name(str(s)) for s in _list(raw, "support"))
    tasks = tuple(normalize_task_name(str(t)) for t in _list(raw, "tasks"))
    seed = raw.get("seed")
    model = raw.get("model")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _Invalid("'seed' is missing or not an integer")
    if not isinstance(model, str) or not model:
        raise _Invalid("'model' is missing")

    task_scores: dict[str, float] = {}
    for task, best in _dict(raw, "best_by_task").items():
        value = best.get("score") if isinstance(best, dict) else None
        if _is_number(value):
            task_scores[normalize_task_name(task)] = float(value)

    score = None
    if method == "mtl_all":
        if not tasks:
            tasks = tuple(task_scores)
        if not task_scores:
            raise _Invalid("an mtl_all record without 'best_by_task' scores")
    else:
        if target is None:
            raise _Invalid(f"a {method} record without 'target'")
        best = raw.get("best")
        score = best.get("score") if isinstance(best, dict) else None
        if not _is_number(score):
            raise _Invalid("'best.score' is missing or not a finite number")
        score = float(score)
        if method != "single" and not support:
            raise _Invalid(f"a {method} record without 'support'")

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
        raise _Invalid(f"'{key}' is not an object")
    return value


def _list(raw: dict, key: str) -> list:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise _Invalid(f"'{key}' is not a list")
    return value
