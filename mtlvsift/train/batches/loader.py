"""From tokenized task datasets to the batches the loop consumes.

``prepare_task_data`` loads (and caches) every task's training and dev sets and applies the
subsampling options; ``MixedTaskDataset`` turns rows of (task, example) from the sampler's
schedule into features in one bulk read per task; ``train_loader`` wraps one epoch's batches in
a DataLoader so that collation runs ahead of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from mtlvsift.train.config import TrainConfig, used_train_size
from mtlvsift.train.data.tokenized import load_tokenized
from mtlvsift.train.data.glue import resolve_data_dir, split_names
from mtlvsift.train.data.fingerprints import data_source
from mtlvsift.train.data.holdout import carve
from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import Task, get_task

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "label")


@dataclass
class TaskData:
    task: Task
    train: datasets.Dataset
    dev: dict[str, datasets.Dataset]  # dev split name -> tokenized split
    available: int  # training examples before subsampling (the file's rows)
    train_rows: np.ndarray | None = None  # the training file's row of each example of ``train``
    holdout: datasets.Dataset | None = None  # --select-on holdout: the part selected on
    holdout_rows: np.ndarray | None = None  # its rows of the training file


def prepare_task_data(config: TrainConfig, tokenizer, main_process_first) -> list[TaskData]:
    """Every task's tokenized training and dev sets, subsampled as the config asks.

    ``main_process_first`` is accelerate's context manager: the main process tokenizes and fills
    the cache, the others then read it.
    """
    data_dir = resolve_data_dir(config.data_dir)
    result = []
    target_available = 0  # the target comes first in config.tasks (MTL_All has none)
    for name in config.tasks:
        task = get_task(name)
        with main_process_first():
            known = (config.data_fingerprints or {}).get(task.name, {})  # hashed once, reused
            splits = {split: load_tokenized(task, split, tokenizer, config.max_seq_length, data_dir,
                                            data_fp=known.get(split))
                      for split in split_names(task)}
        train = splits.pop("train")
        for split, dev in splits.items():
            if task.is_regression and len(dev) < 2:  # a correlation needs two points
                raise MtlvsiftError(
                    f"{data_source(task, split, data_dir)}: the {task.display} {split} set has "
                    f"{len(dev)} example; its Pearson and Spearman correlations need at least 2.")
        if task.name == config.target:
            target_available = len(train)
        keep = [c for c in MODEL_COLUMNS if c in train.column_names]
        pool, held = np.arange(len(train)), None
        if config.select_on == "holdout":  # carved first: subsampling draws from the rest
            held = carve(train["label"], config.holdout_fraction, task.name)
            pool = np.setdiff1d(pool, held)
        rows = pool[_subsample(config, task, len(train), len(pool), target_available)]
        used = (train if len(rows) == len(train) else train.select(rows)).select_columns(keep)
        holdout = None if held is None else train.select(held).select_columns([*keep, "length"])
        result.append(TaskData(task, used, splits, available=len(train), train_rows=rows,
                               holdout=holdout, holdout_rows=held))
    return result


def _subsample(config: TrainConfig, task: Task, available: int, pool: int,
               target_available: int) -> np.ndarray:
    """Positions in the training pool (``pool`` rows of the file's ``available``) of the examples
    the run trains on."""
    size = used_train_size(config, task.name, available, target_available)
    if task.name != config.target and config.support_ratio is not None:
        # The same draw as a single run with --max-train-examples <size>: its STILTs counterpart.
        return np.arange(pool) if size == pool else subsample_indices(pool, size, config.data_seed)
    capped = min(pool, config.max_train_examples or pool)
    indices = np.arange(pool) if capped == pool else subsample_indices(pool, capped, config.data_seed)
    if size < capped:  # the target's fraction is drawn within the cap: nested subsets
        indices = indices[subsample_indices(capped, size, config.data_seed + 1)]
    return indices


class MixedTaskDataset(torch.utils.data.Dataset):
    """Rows ``(task_index, example_index)`` -> feature dicts, one bulk read per task in a batch."""

    def __init__(self, train_sets: list[datasets.Dataset]):
        self.train_sets = train_sets

    def __len__(self) -> int:
        return sum(len(ds) for ds in self.train_sets)

    def __getitems__(self, rows: np.ndarray) -> list[dict]:
        features: list[dict | None] = [None] * len(rows)
        for task_index in np.unique(rows[:, 0]):
            positions = np.flatnonzero(rows[:, 0] == task_index)
            columns = self.train_sets[task_index][rows[positions, 1].tolist()]
            for j, position in enumerate(positions):
                item = {key: values[j] for key, values in columns.items()}
                item["task_id"] = int(task_index)
                features[position] = item
        return features

    def __getitem__(self, row):  # DataLoader uses __getitems__; this keeps the Dataset protocol
        return self.__getitems__(np.asarray([row]))[0]


def micro_batch_collator(collate: Callable, micro_batches: int) -> Callable:
    """Collate a process's share of a global batch into ``micro_batches`` padded micro-batches."""

    def collate_micro(features: list[dict]) -> list[dict]:
        chunks = np.array_split(np.arange(len(features)), micro_batches)
        return [collate([features[i] for i in chunk]) for chunk in chunks if len(chunk)]

    return collate_micro


def train_loader(dataset: MixedTaskDataset, local_batches: list[np.ndarray], collate: Callable,
                 num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over precomputed batches: the order is the sampler's, nothing is shuffled here."""
    # Its own generator: creating a loader iterator draws a seed, and drawing it from the global
    # RNG would shift the dropout masks of a resumed run away from those of an uninterrupted one.
    return DataLoader(dataset, batch_sampler=local_batches, collate_fn=collate,
                      num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(0))


def subsample_indices(n: int, k: int, data_seed: int) -> np.ndarray:
    """``k`` distinct sorted indices of range(n), drawn from their own generator (``data_seed``)."""
    if not 0 <= k <= n:
        raise MtlvsiftError(
            f"Cannot draw {k} examples from a training set of {n}; ask for at most {n}."
        )
    rng = np.random.default_rng(data_seed)
    return np.sort(rng.choice(n, size=k, replace=False))
