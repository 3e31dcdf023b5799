"""GLUE metrics for the training loop: the local ``evaluate`` module, predictions, prefixes.

The metric itself lives in ``metric/glue_metric.py`` (shipped as package data) and is loaded with
``evaluate.load`` from that path, so it works offline (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtlvsift.tasks import Task

if TYPE_CHECKING:  # importing evaluate pulls in transformers' pipelines (seconds): only on use
    import evaluate

GLUE_METRIC_PATH = Path(__file__).resolve().parent / "metric" / "glue_metric.py"

# evaluate.load copies and imports the module file: do it once per task per process.
_METRICS: dict[str, evaluate.EvaluationModule] = {}


def load_glue_metric(task: Task) -> evaluate.EvaluationModule:
    """The GLUE metric of ``task`` (config = task name), kept in memory, cached per process."""
    if task.name not in _METRICS:
        import evaluate

        _METRICS[task.name] = evaluate.load(
            str(GLUE_METRIC_PATH), config_name=task.name, keep_in_memory=True
        )
    return _METRICS[task.name]


def logits_to_predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax over the last axis), or the regression value for STS-B."""
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(len(logits)).astype(np.float32)
    return logits.argmax(axis=-1)


def compute_task_metrics(
    task: Task, outputs: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """Metrics of every dev split given in ``outputs`` (split name -> (predictions, references)).

    Names get the split's prefix: MNLI gives ``{"accuracy": matched, "mm_accuracy": mismatched}``.
    """
    prefixes = {Path(split.file).stem: split.metric_prefix for split in task.dev_splits}
    unknown = sorted(set(outputs) - set(prefixes))
    if unknown:
        raise ValueError(
            f"{task.display} has no dev split {unknown}; its splits are {sorted(prefixes)}."
        )
    metric = load_glue_metric(task)
    results: dict[str, float] = {}
    # Labels are stored as float32 for every task; hand the metric class ids as ints explicitly.
    dtype = np.float32 if task.is_regression else np.int64
    for split, (predictions, references) in outputs.items():
        scores = metric.compute(
            predictions=np.asarray(predictions).astype(dtype),
            references=np.asarray(references).astype(dtype),
        )
        results.update({prefixes[split] + name: float(value) for name, value in scores.items()})
    return results
