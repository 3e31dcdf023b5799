"""The data a run trains on, as part of its identity: one fingerprint per task and split.

A fingerprint is the file's sha256 (a GLUE folder, or a task file's data file) or the hub
dataset's fingerprint: the key the tokenization cache uses, computed once here and handed on to it (a file is never hashed twice).
It is stored in ``config.json`` and the record, so that a run resumed, or a finished run rerun,
on other files is refused with the name of the file that differs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import Task, get_task
from mtlvsift.train.data import user_data
from mtlvsift.train.config import TrainConfig
from mtlvsift.train.data.glue import (HUB_DATASET, _hub_split, _tsv_path, data_fingerprint, resolve_data_dir, split_names)


def with_data_fingerprints(config: TrainConfig) -> TrainConfig:
    """The config with ``data_fingerprints`` set: {task: {split: fingerprint}}."""
    data_dir = resolve_data_dir(config.data_dir)
    fingerprints = {}
    for name in config.tasks:
        task = get_task(name)
        fingerprints[task.name] = {split: data_fingerprint(task, split, data_dir)
                                   for split in split_names(task)}
    return dataclasses.replace(config, data_fingerprints=fingerprints)


def check_same_data(stored: dict[str, Any] | None, config: TrainConfig) -> None:
    """Refuse a run folder whose stored identity was computed on other data files.

    Only the fingerprints of the tasks both identities share are compared here; any other
    difference is left to the run folder's general config check.
    """
    before = stored.get("data_fingerprints") if stored else None
    if not isinstance(before, dict):
        return
    data_dir = resolve_data_dir(config.data_dir)
    for name, splits in (config.data_fingerprints or {}).items():
        old = before.get(name)
        if not isinstance(old, dict):
            continue
        for split, now in splits.items():
            if split in old and old[split] != now:
                task = get_task(name)
                where = (f"Restore that file (task file {task.source.task_file})" if task.source
                         else "Pass the --data-dir the run started with")
                raise MtlvsiftError(
                    f"{data_source(task, split, data_dir)} is not the {task.display} {split} data this "
                    f"run was trained on (fingerprint {str(old[split])[:12]}... when it started, "
                    f"{now[:12]}... now). {where}, or --overwrite to train it again on these files.")


def data_source(task: Task, split: str, data_dir: Path | None) -> str:
    """Where a split comes from, for messages: its file, or the hub dataset."""
    if task.source is not None:  # a task file's task: its own file or hub dataset
        where = user_data.split_source(task, split)
        if task.source.hub_path:
            return f"The hub dataset {task.source.hub_path} ({task.source.hub_name}, {where})"
        return where
    if data_dir is None:
        return f"The hub dataset {HUB_DATASET} ({task.hub_config}, {_hub_split(task, split)})"
    return str(_tsv_path(task, split, data_dir))
