"""The held-out selection split (``--select-on holdout``): a fixed part of each task's training set.

The part is ``holdout_size`` = round(F x n) rows of the task's training file (n its rows, F
``--holdout-fraction``), carved before any subsampling (``--max-train-examples`` and the size
experiment's fractions draw from the rest), stratified by label (quantile bins of a regression's
label): each stratum gets the largest-remainder share of the total, within one row of its exact
share (of F x its rows when F x n is whole, as RTE's 249). The draw has its own generator seeded by a
constant, so the rows are the same for every ``--seed`` and ``--data-seed``, and for every run of
the task with that fraction (a single run and the MTL run that reads its score hold out the
same rows). The run trains on the rest, selects its checkpoints on these rows, and reports dev.
Imports numpy only where rows are drawn (the dry run counts, and never imports it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import get_task

HOLDOUT_SEED = 19  # the carve's own generator: the same rows whatever the run's seeds
REGRESSION_BINS = 10  # a regression's label is stratified by its deciles


def holdout_size(task: str, available: int, fraction: float) -> int:
    """Rows held out of a training set of ``available`` rows; a part too small to score (a
    regression's correlation needs two rows), or one that leaves nothing to train on, is an error."""
    held = math.floor(fraction * available + 0.5)
    least = 2 if get_task(task).is_regression else 1
    if held < least or held >= available:
        raise MtlvsiftError(
            f"--holdout-fraction {fraction:g} of {get_task(task).display}'s {available} training "
            f"rows holds out {held}: selection needs at least {least} held-out row"
            f"{'s' if least > 1 else ''} and one left to train on. Choose another "
            f"--holdout-fraction, or --select-on dev.")
    return held


def strata(labels: Any, regression: bool) -> Any:
    """Each row's stratum: its label, or a regression label's quantile bin."""
    import numpy as np

    labels = np.asarray(labels)
    if not regression:
        return labels.astype(np.int64)
    edges = np.quantile(labels.astype(np.float64), np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
    return np.searchsorted(edges, labels, side="right")


def carve(labels: Any, fraction: float, task: str) -> Any:
    """The held-out rows (sorted indices of the training file's rows), ``holdout_size`` of them:
    per stratum, the largest-remainder share of the total, drawn without replacement."""
    import numpy as np

    groups = strata(labels, get_task(task).is_regression)
    total = holdout_size(task, len(groups), fraction)
    values, counts = np.unique(groups, return_counts=True)
    quotas = total * counts / len(groups)
    shares = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - shares), kind="stable")  # largest remainders first
    shares[order[:total - int(shares.sum())]] += 1
    rng = np.random.default_rng(HOLDOUT_SEED)
    held = [rng.permutation(np.flatnonzero(groups == value))[:share]
            for value, share in zip(values, shares)]
    return np.sort(np.concatenate(held))


def holdout_view(task_data: list) -> list:
    """The tasks' held-out parts as an evaluation reads dev sets (``TaskData`` whose ``dev`` is the
    held-out part, under the first dev split's name: its metrics are named as dev's main ones)."""
    from mtlvsift.train.data.glue import split_names

    return [dataclasses.replace(d, dev={split_names(d.task)[1]: d.holdout}) for d in task_data]


def selection_split(config: Any, task_data: list) -> dict[str, Any]:
    """The record's ``selection``: the split checkpoints were selected on, its fraction and its
    rows per task (dev: the dev sets' rows)."""
    if config.select_on != "holdout":
        return {"split": "dev", "fraction": None,
                "rows": {d.task.name: sum(len(s) for s in d.dev.values()) for d in task_data}}
    return {"split": "holdout", "fraction": config.holdout_fraction,
            "rows": {d.task.name: len(d.holdout) for d in task_data}}
