"""Which saved model of a run holds each task's reported score.

The report reads every task's own best dev score (``best_by_task``): the target's is the
selected model, ``best/``; a supporting task of pairwise MTL, or any task of MTL_All, may have
had its best at another evaluation, whose model is kept as ``best-<task>/`` (written by
``writer.CheckpointWriter``). ``task_model`` is what ``predict.py`` predicts a task with.
Imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlvsift import run_record
from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import RunFolder
from mtlvsift.run_record import RunRecord
from mtlvsift.tasks import Task, get_task


def task_best_dir(run_dir: Path, task: str) -> Path:
    """Where ``task``'s own best model is kept when it is not ``best/`` (task names are lower-case
    letters, digits and underscores: no dots, so ``best-<task>.tmp`` and ``.old`` are its copies)."""
    return Path(run_dir) / f"best-{task}"


def tasks_with_own_best(best: dict[str, Any], best_by_task: dict[str, dict[str, Any]]) -> list[str]:
    """The tasks of a multi-task run whose best dev score came at another step than the selected
    model's (``best``): their best model is kept in ``best-<task>/``, since the report reads each
    task's own best score (the supporting side of pairwise MTL, every task of MTL_All)."""
    return [task for task, entry in best_by_task.items() if entry["step"] != best["step"]]


@dataclass
class TaskModel:
    """The saved model that predicts a task, and what the record holds for that task there."""

    folder: Path
    step: int  # the evaluation the model comes from
    expected: dict[str, float] | None  # the task's dev metrics the record holds at that step
    note: str  # one line: which model, and the score the report holds


def task_model(run_dir: Path, record: RunRecord, task: Task) -> TaskModel:
    """The saved model whose dev score the report holds for ``task``: ``best/`` where the task's
    best step is the selected one, else the task's own ``best-<task>/`` (a run trained before
    those were kept has none: then ``best/``, and the note says that the scores differ)."""
    run = RunFolder(run_dir)
    best, own = record.best, record.best_by_task.get(task.name)
    best_step, own_step = _step(best, "best"), _step(own, f"best_by_task.{task.name}")
    selected = "the mean of the tasks' main scores" if best.get("metric") == run_record.MEAN_MAIN \
        else f"{get_task(str(best.get('task') or record.target)).display}'s dev score"
    held = f"{task.display}'s best dev {task.main_metric} {100 * own['score']:.2f}, at step {own_step}"
    if own_step == best_step:
        return TaskModel(run.best_dir, best_step, _recorded(own, task),
                         f"{task.display}: the model of {run.best_dir} ({held}: the score the report holds).")
    if (own_dir := task_best_dir(run_dir, task.name)).is_dir():
        return TaskModel(own_dir, own_step, _recorded(own, task),
                         f"{task.display}: the model of {own_dir} ({held}: the score "
                         f"the report holds; {run.best_dir} is the best by {selected}, at step {best_step}).")
    at_best = next((h for h in record.history if isinstance(h, dict) and h.get("step") == best_step), None)
    expected = _recorded(at_best, task)
    there = f", where its dev {task.main_metric} was {100 * task.main_score(expected):.2f}" if expected else ""
    return TaskModel(run.best_dir, best_step, expected,
                     f"Note: the report's {task.display} score ({held}) comes from a model this run did "
                     f"not keep (it was trained before mtlvsift kept each task's best model); these "
                     f"predictions come from {run.best_dir}, the best by {selected}, at step "
                     f"{best_step}{there}.")


def _step(entry: object, name: str) -> int:
    step = entry.get("step") if isinstance(entry, dict) else None
    if not isinstance(step, int) or isinstance(step, bool):
        raise MtlvsiftError(f"The run record has no valid {name}.step; it was not written by mtlvsift.")
    return step


def _recorded(entry: dict | None, task: Task) -> dict[str, float] | None:
    """The task's dev metrics in a record's evaluation entry (``metrics[task]``), if valid."""
    metrics = (entry or {}).get("metrics")
    values = metrics.get(task.name) if isinstance(metrics, dict) else None
    numbers = {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))
               and not isinstance(v, bool)} if isinstance(values, dict) else {}
    return numbers if task.main_metric in numbers else None
