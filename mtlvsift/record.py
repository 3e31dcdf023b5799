"""The run record (``result.json``): model selection entries and the record itself.

The schema is the contract with ``compare.py`` (see DESIGN.md): bump ``SCHEMA`` on any change
that a reader must know about.
"""

from __future__ import annotations

import platform
import statistics
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mtlvsift.run_folder import SCHEMA
from mtlvsift.tasks import get_task

MEAN_MAIN = "mean_main"  # MTL_All selects its single best model by the mean main score


def selection_entry(entry: dict[str, Any], task: str | None) -> dict[str, Any]:
    """One evaluation seen as a candidate best: by ``task``'s main metric, or by the mean over
    every task's main metric when ``task`` is None (MTL_All)."""
    metrics = entry["metrics"]
    if task is None:
        score = statistics.fmean(metrics[t][get_task(t).main_metric] for t in metrics)
        metric = MEAN_MAIN
    else:
        metric = get_task(task).main_metric
        score = metrics[task][metric]
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


def build_record(config, progress, task_data, accelerator) -> dict[str, Any]:
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
        "train_sizes": {d.task.name: len(d.train) for d in task_data},
        "available_train_sizes": {d.task.name: d.available for d in task_data},
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
            "examples": progress.examples,
            "examples_per_second": progress.examples / seconds if seconds > 0 else None,
            "device": str(accelerator.device),
            "num_processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
            "steps": progress.step,
        },
        "versions": _versions(),
    }
