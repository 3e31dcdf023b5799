"""What a task's main dev score may be, as the trainer records it and the readers check it.

A score is a finite number in [0, 1] (never points), or in [-1, 1] for a correlation (CoLA's MCC,
STS-B's Spearman). A task-file task's bounds follow its main metric: a built-in metric has the
bounds above; the key of a local evaluate module may be any finite number. Shared by the record
reader (``run_record``) and the trainer's prerequisites. Imports neither torch nor transformers.
"""

from __future__ import annotations

import math
import re

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import GLUE_TASKS, get_task

METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_. -]{0,63}")  # what a report may show of one
# The main metrics a task file may name, by lowest score (the highest is 1 for all).
SCORE_BOUNDS = {"accuracy": 0.0, "f1": 0.0, "f1_macro": 0.0, "mcc": -1.0, "pearson": -1.0,
                "spearman": -1.0}


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )


def lowest_score(task: str, metric: str | None = None) -> float | None:
    """The lower bound of ``task``'s main score (its upper is 1); None: no known bounds.

    ``metric``: the main metric as a record names it; without it, a task-file task given to this
    process (the trainer) is looked up, and an unknown one has no known bounds."""
    if task in GLUE_TASKS:
        return GLUE_TASKS[task].lowest_score
    if metric is None:
        try:
            metric = get_task(task).main_metric
        except MtlvsiftError:
            return None
    return SCORE_BOUNDS.get(metric)


def is_score(value: object, task: str, metric: str | None = None) -> bool:
    """A main dev score of ``task``: a finite number within its main metric's bounds."""
    low = lowest_score(task, metric)
    return is_number(value) and (low is None or low <= value <= 1)


def score_range(task: str, metric: str | None = None) -> str:
    """What a score of ``task`` must be, for messages: 'in [-1, 1]', or 'finite'."""
    low = lowest_score(task, metric)
    return "finite" if low is None else f"in [{low:g}, 1]"
