"""Each task's constant-prediction baseline on its dev set: what a model that learned nothing scores.

Classification: the most frequent training label (the first in label order on a tie) predicted for
every dev row; regression: the mean training label, whose correlations are undefined and recorded
as 0.0. The metrics come from the same code as the evaluation's (``metrics.compute_task_metrics``),
so a run's dev scores and its baseline can be compared directly.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from mtlvsift.train.batches.loader import TaskData
from mtlvsift.train.evaluation.metrics import compute_task_metrics


def constant_baseline(data: TaskData) -> dict[str, Any]:
    """``{"prediction": label text or the mean, "metrics": {...}, "score": main score}``."""
    task = data.task
    labels = np.asarray(data.train["label"], dtype=np.float64)
    if task.is_regression:
        value = float(labels.mean())
        prediction: str | float = value
    else:
        value = int(np.bincount(labels.astype(np.int64), minlength=task.num_labels).argmax())
        prediction = task.label_names[value]
    outputs = {}
    for split, dataset in data.dev.items():
        references = np.asarray(dataset["label"])
        outputs[split] = (np.full(len(references), value), references)
    with warnings.catch_warnings():  # scipy warns that a constant input has no correlation
        warnings.simplefilter("ignore")
        metrics = compute_task_metrics(task, outputs)
    # A constant prediction has no correlation (NaN): it explains nothing, so 0.
    metrics = {name: v if math.isfinite(v) else 0.0 for name, v in metrics.items()}
    return {"prediction": prediction, "metrics": metrics, "score": task.main_score(metrics)}


def constant_baselines(task_data: list[TaskData]) -> dict[str, dict[str, Any]]:
    """Every task's baseline, by task name."""
    return {data.task.name: constant_baseline(data) for data in task_data}
