"""Metrics for the training loop: the local ``evaluate`` module, predictions, prefixes.

The metric itself lives in ``metric/glue_metric.py`` (shipped as package data) and is loaded with
``evaluate.load`` from that path, so it works offline (``HF_HUB_OFFLINE=1``). A task file's task
computes each of its metrics: a config of that module by name, or a local evaluate module of its
own (a path); a module's keys become metric names.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import Task

if TYPE_CHECKING:  # importing evaluate pulls in transformers' pipelines (seconds): only on use
    import evaluate

GLUE_METRIC_PATH = Path(__file__).resolve().parent / "metric" / "glue_metric.py"

# evaluate.load copies and imports the module file: do it once per config or module per process.
_METRICS: dict[str, evaluate.EvaluationModule] = {}


def load_metric(name: str) -> evaluate.EvaluationModule:
    """A config of the local metric module (a GLUE task or a metric name), or the local evaluate
    module at the absolute path ``name``; kept in memory, cached per process."""
    if name not in _METRICS:
        import evaluate

        if Path(name).is_absolute():
            _METRICS[name] = evaluate.load(name, keep_in_memory=True)
        else:
            _METRICS[name] = evaluate.load(str(GLUE_METRIC_PATH), config_name=name,
                                           keep_in_memory=True)
    return _METRICS[name]


def metric_module_problem(path: str) -> str | None:
    """Why the local evaluate module at the absolute ``path`` cannot be loaded (an import that
    fails, a syntax error, no metric class), or None; a module that loads stays cached."""
    try:
        load_metric(path)
    except Exception as exc:  # whatever the module's own code raises
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"
    return None


def _module_of(name: str) -> str:
    """Where a metric comes from, for messages: a module's path, or the built-in module's config."""
    return name if Path(name).is_absolute() else f"{GLUE_METRIC_PATH} (config {name})"


def load_glue_metric(task: Task) -> evaluate.EvaluationModule:
    """The GLUE metric of ``task`` (config = task name)."""
    return load_metric(task.name)


def _scores(task: Task, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """Every metric of the task on one split, as finite floats."""
    names = [task.name] if task.source is None else list(task.metrics)
    scores, origin = {}, {}
    for module_name in names:
        module = load_metric(module_name)
        for name, value in module.compute(predictions=predictions, references=references).items():
            try:
                scores[name] = float(value)
            except (TypeError, ValueError):
                raise MtlvsiftError(f"The metric {name} of task '{task.name}' is not a number "
                                    f"({value!r}); a metric module must return numbers.") from None
            origin[name] = _module_of(module_name)
    if task.main_metric not in scores:
        raise MtlvsiftError(f"Task '{task.name}': its main_metric '{task.main_metric}' is not among "
                            f"the metrics computed ({', '.join(scores)}); fix main_metric in "
                            f"{task.source.task_file if task.source else 'the task registry'}.")
    main = scores[task.main_metric]
    if not math.isfinite(main):  # NaN would stay the best score forever, and the record unreadable
        raise MtlvsiftError(f"Task '{task.name}': its main metric '{task.main_metric}' is {main} "
                            f"(returned by the metric module {origin[task.main_metric]}); the best "
                            f"model is chosen by it, so it must be a finite number. Fix the module.")
    return scores


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
    results: dict[str, float] = {}
    # Labels are stored as float32 for every task; hand the metric class ids as ints explicitly.
    dtype = np.float32 if task.is_regression else np.int64
    for split, (predictions, references) in outputs.items():
        scores = _scores(task, np.asarray(predictions).astype(dtype),
                         np.asarray(references).astype(dtype))
        results.update({prefixes[split] + name: float(value) for name, value in scores.items()})
    return results
