"""Predictions of a finished run's best model (``scripts/predict.py``).

For a GLUE task, the files the GLUE submission server takes: one TSV per task named as GLUE names
it (``RTE.tsv``, ``MNLI-m.tsv`` and ``MNLI-mm.tsv``), columns ``index`` and ``prediction``, labels
spelled as in GLUE's files. For a task-file task, ``<task>.csv`` with ``id`` and ``prediction``.
Inputs are tokenized as in training and run in length-sorted batches, as in evaluation. The
run's task-file tasks are read from the task files the run recorded (or ``--task-file``), and a
file that changed since training is refused: its labels may mean something else now.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mtlvsift import run_record
from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import PREDICT_SPLITS
from mtlvsift.run_folder import RESULT_FILE, atomic_write
from mtlvsift.tasks import GLUE_TASKS, Task, get_task
from mtlvsift.train.data import user_data
from mtlvsift.train.data.glue import glue_hub_split, resolve_data_dir
from mtlvsift.train.data.task_files import load_task_files

if TYPE_CHECKING:  # torch, transformers and datasets load once the inputs are read and checked
    import datasets
    import numpy as np
    import torch

    from mtlvsift.train.model.multitask import MultiTaskModel

SPLITS = PREDICT_SPLITS


@dataclass
class Inputs:
    """The examples of one output file."""

    name: str  # output file stem: RTE, MNLI-m, mysent
    texts: dict[str, list[str]]  # text_a, [text_b]
    ids: list[str]
    source: str  # the file (or hub split) they come from, for messages


def predict(run_dir: str | Path, out_dir: str | Path, split: str | None = None,
            file: str | Path | None = None, task_name: str | None = None,
            data_dir: str | Path | None = None, batch_size: int = 256,
            task_files: list[str] | None = None) -> list[Path]:
    """Write the predictions of the run's ``best/`` model on ``split`` (test or dev) or ``file``
    for its target (``task_name``: another of its tasks; MTL_All: every task); returns the files."""
    run_dir = Path(run_dir)
    record = _finished_record(run_dir)
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    max_length = config.get("max_seq_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise MtlvsiftError(f"{run_dir / RESULT_FILE} has no valid config.max_seq_length.")
    _register_run_tasks(config, task_files)
    tasks = _tasks_to_predict(record, task_name, file)
    glue_dir = resolve_data_dir(data_dir) if any(t.source is None for t in tasks) else None
    # Every input is read (and checked) before the model runs and before anything is written.
    jobs = [(task, inputs) for task in tasks for inputs in _inputs(task, split, file, glue_dir)]
    empty = next((inputs.source for _, inputs in jobs if not inputs.ids), None)
    if empty is not None:
        raise MtlvsiftError(f"{empty} has no rows to predict (a header only?). Give a file with "
                            f"examples.")
    import torch

    from mtlvsift.train.model.multitask import MultiTaskModel, model_folder_problem

    problem = model_folder_problem(run_dir / "best")
    if problem:
        raise MtlvsiftError(f"The best model of {run_dir} ({run_dir / 'best'}) cannot be loaded "
                            f"({problem}). Train the run again (its command with --overwrite).")
    model, tokenizer = MultiTaskModel.load(run_dir / "best")
    missing = [t.name for t in tasks if t.name not in model.task_names]
    if missing:
        raise MtlvsiftError(f"The best model of {run_dir} has no head for {', '.join(missing)} "
                            f"(heads: {', '.join(model.task_names)}).")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    predictions = [_predict(model, tokenizer, task, model.task_names.index(task.name), inputs,
                            max_length, batch_size, device) for task, inputs in jobs]
    return [_write(Path(out_dir), task, inputs, p) for (task, inputs), p in zip(jobs, predictions)]


def _finished_record(run_dir: Path) -> dict:
    if not (run_dir / RESULT_FILE).is_file():
        raise MtlvsiftError(f"{run_dir} holds no finished run ({RESULT_FILE} is missing). Give the "
                            f"folder of one seed, e.g. outputs/single/rte/seed-0, once it has finished.")
    try:
        return run_record.load(run_dir / RESULT_FILE)
    except run_record.InvalidRecord as exc:
        raise MtlvsiftError(f"{run_dir / RESULT_FILE} is {exc}.") from None


def _register_run_tasks(config: dict, task_files: list[str] | None) -> None:
    """Register the run's own task files (unless ``--task-file`` gave others) and check that they
    still define its tasks as when it trained."""
    definitions = config.get("task_definitions") or {}
    if not definitions:
        return  # GLUE tasks only
    if not isinstance(definitions, dict):
        raise MtlvsiftError("The run record's config.task_definitions is not an object.")
    if not task_files:
        recorded = config.get("task_files")
        if not isinstance(recorded, list) or \
                not all(isinstance(p, str) and Path(p).is_file() for p in recorded):
            raise MtlvsiftError(f"The task files this run recorded ({recorded}) cannot be read; "
                                f"pass the file it was trained with: --task-file FILE.")
        load_task_files(recorded)
    for name, sha256 in definitions.items():
        task = get_task(str(name))
        if task.source is None or task.source.task_file_sha256 != sha256:
            raise MtlvsiftError(
                f"Task '{name}' is not defined as when the run trained: its task file "
                f"{task.source.task_file if task.source else ''} changed since. Restore the file "
                f"the run was trained with, or pass it with --task-file.")


def _tasks_to_predict(record: dict, name: str | None, file) -> list[Task]:
    run_tasks = [str(t) for t in record.get("tasks") or []]
    if name is not None:
        task = get_task(name)
        if task.name not in run_tasks:
            raise MtlvsiftError(f"--task {name}: the run trained {', '.join(run_tasks)}.")
        return [task]
    if record.get("target"):
        return [get_task(str(record["target"]))]
    if file is not None:
        raise MtlvsiftError(f"This run has no target; with --file, name the task with --task "
                            f"({', '.join(run_tasks)}).")
    return [get_task(t) for t in run_tasks]


# --------------------------------------------------------------------------- inputs


def _inputs(task: Task, split: str | None, file, glue_dir: Path | None) -> list[Inputs]:
    if task.source is not None:
        table = user_data.read_table(file) if file else user_data.split_table(task, split)
        return [Inputs(task.name, user_data.texts(task, table), user_data.example_ids(task, table),
                       table.source)]
    if file is not None:
        return [_glue_file(task, Path(file), task.display)]
    found = []
    for dev in task.dev_splits:
        suffix = {"_matched": "-m", "_mismatched": "-mm"}.get(Path(dev.file).stem[3:], "")
        name = f"{task.display}{suffix}"  # MNLI-m, MNLI-mm: GLUE's names
        if glue_dir is None:
            hub_split = dev.hub_split if split == "dev" else dev.hub_split.replace("validation", "test")
            raw = glue_hub_split(task, hub_split)
            rows = _hub_rows(raw)
            found.append(Inputs(name, user_data.texts(task, rows, task.hub_text_columns),
                                [str(i) for i in raw["idx"]], rows.source))
            continue
        path = glue_dir / task.folder / (dev.file if split == "dev" else dev.file.replace("dev", "test"))
        if not path.is_file():
            raise MtlvsiftError(f"Missing {task.display} {split} file: expected {path}.")
        found.append(_glue_file(task, path, name))
    return found


def _hub_rows(raw: datasets.Dataset) -> user_data.Table:
    return user_data.Table(f"nyu-mll/glue {raw.split}", raw.to_dict())


def _glue_file(task: Task, path: Path, name: str) -> Inputs:
    """A GLUE TSV file with a header (dev or test), or CoLA's header-less train/dev format."""
    columns = task.text_columns if all(isinstance(c, str) for c in task.text_columns) \
        else task.hub_text_columns  # CoLA's test file has a header: index, sentence
    table = user_data.read_table(path)
    if not task.has_header and not set(columns) <= set(table.columns):
        table = user_data.read_table(path, header=False)
        columns = tuple(str(c) for c in task.text_columns)
    ids = table.columns.get("index") or table.columns.get("id") or range(len(table))
    return Inputs(name, user_data.texts(task, table, columns), [str(i) for i in ids], str(path))


# --------------------------------------------------------------------------- model, files


def _predict(model: MultiTaskModel, tokenizer, task: Task, head: int, inputs: Inputs,
             max_length: int, batch_size: int, device: torch.device) -> np.ndarray:
    """Tokenized as in training, run in length-sorted batches as in evaluation."""
    import datasets
    import numpy as np
    import torch

    from mtlvsift.train.batches.loader import TaskData
    from mtlvsift.train.batches.padding import make_collator
    from mtlvsift.train.data.tokenized import _tokenize
    from mtlvsift.train.evaluation.dev import build_eval_batches
    from mtlvsift.train.evaluation.metrics import logits_to_predictions
    from mtlvsift.train.model.pretrained import check_tokenizer_reads

    dataset = datasets.Dataset.from_dict({**inputs.texts, "label": [0.0] * len(inputs.ids)})
    tokenized = _tokenize(dataset, task, "predict", tokenizer, max_length, uuid.uuid4().hex)
    check_tokenizer_reads(tokenizer, [tokenized], f"the {inputs.name} text to predict")
    batches = build_eval_batches([TaskData(task, tokenized, {"predict": tokenized}, 0)],
                                 make_collator(tokenizer, None), batch_size, 0, 1)
    predictions = np.empty(len(tokenized), dtype=np.float64)
    with torch.inference_mode():
        for batch in batches:
            features = {k: v.to(device) for k, v in batch.inputs.items()}
            features["task_ids"] = torch.full_like(features["task_ids"], head)
            logits = model(**features).float().cpu().numpy()
            predictions[batch.positions] = logits_to_predictions(task, logits)
    return predictions


def _write(out_dir: Path, task: Task, inputs: Inputs, predictions: np.ndarray) -> Path:
    if task.is_regression:
        values = [f"{p:.3f}" if task.name in GLUE_TASKS else repr(float(p)) for p in predictions]
    else:
        values = [task.label_names[int(p)] for p in predictions]
    text = io.StringIO()
    if task.name in GLUE_TASKS:  # the submission format: tab-separated, index and prediction
        text.write("index\tprediction\n")
        text.writelines(f"{i}\t{v}\n" for i, v in zip(inputs.ids, values))
        path = out_dir / f"{inputs.name}.tsv"
    else:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["id", "prediction"])
        writer.writerows(zip(inputs.ids, values))
        path = out_dir / f"{inputs.name}.csv"
    try:
        atomic_write(path, text.getvalue())
    except OSError as exc:
        raise MtlvsiftError(f"Could not write {path}: {exc}.") from None
    return path
