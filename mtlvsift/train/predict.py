"""Predictions of a finished run's best model (``scripts/predict.py``).

For a GLUE task, the files the GLUE submission server takes: one TSV per task named as GLUE names
it (``RTE.tsv``, ``MNLI-m.tsv`` and ``MNLI-mm.tsv``), columns ``index`` and ``prediction``, labels
spelled as in GLUE's files. For a task-file task, ``<task>.csv`` with ``id`` and ``prediction``.
Inputs are tokenized as in training and run in length-sorted batches, as in evaluation. The
run's task-file tasks are read from the task files the run recorded (or ``--task-file``), and a
file that changed since training is refused: its labels may mean something else now. GLUE comes
from the folder the run recorded (``config.data_dir``) unless ``--data-dir`` names another.

Each task is predicted by the model whose dev score the report holds for it (``task_model``):
``best/``, or the task's own ``best-<task>/`` where its best step is not ``best/``'s; a line says
which, and ``--split dev`` prints the scores beside the record's.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mtlvsift import run_record
from mtlvsift.display import safe_text
from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import PREDICT_SPLITS
from mtlvsift.run_folder import RESULT_FILE, atomic_write
from mtlvsift.run_record import RunRecord
from mtlvsift.tasks import GLUE_TASKS, Task, get_task
from mtlvsift.train.checkpoint.task_models import TaskModel, task_model
from mtlvsift.train.data import user_data
from mtlvsift.train.data.glue import data_fingerprint, glue_hub_split, load_split, resolve_data_dir
from mtlvsift.train.data.task_files import load_task_files
from mtlvsift.train.run_messages import quiet_datasets_in_logs

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
    split: str = ""  # the dev split they are (dev, dev_matched, ...) when --split dev


def predict(run_dir: str | Path, out_dir: str | Path, split: str | None = None,
            file: str | Path | None = None, task_name: str | None = None,
            data_dir: str | Path | None = None, batch_size: int = 256,
            task_files: list[str] | None = None, say: Callable[[str], None] = print) -> list[Path]:
    """Write the predictions on ``split`` (test or dev) or ``file`` for the run's target
    (``task_name``: another of its tasks; MTL_All: every task), each by the model the report's
    score comes from; ``say`` gets the lines to show (the model used, the files, dev scores).
    Returns the files written."""
    run_dir = Path(run_dir)
    record = _finished_record(run_dir)
    config = record.config
    max_length = config.get("max_seq_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise MtlvsiftError(f"{run_dir / RESULT_FILE} has no valid config.max_seq_length.")
    _register_run_tasks(config, task_files)
    tasks = _tasks_to_predict(record, task_name, file)
    glue_dir = _glue_folder(data_dir, config) if any(t.source is None for t in tasks) else None
    models = {task.name: task_model(run_dir, record, task) for task in tasks}
    # Every input is read (and checked) before the model runs and before anything is written.
    jobs = [(task, inputs) for task in tasks for inputs in _inputs(task, split, file, glue_dir)]
    empty = next((inputs.source for _, inputs in jobs if not inputs.ids), None)
    if empty is not None:
        raise MtlvsiftError(f"{empty} has no rows to predict (a header only?). Give a file with "
                            f"examples.")
    references = {(task.name, inputs.name): _dev_labels(task, inputs, glue_dir)
                  for task, inputs in jobs if inputs.split}
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    predictions = {}
    with quiet_datasets_in_logs():  # no "Tokenizing" bars in a log file
        for folder in dict.fromkeys(m.folder for m in models.values()):  # each model loaded once
            its_jobs = [(task, inputs) for task, inputs in jobs if models[task.name].folder == folder]
            predictions |= _predictions_of(folder, run_dir, its_jobs, max_length, batch_size, device)
    written = []
    for task in tasks:
        say(models[task.name].note)
        task_jobs = [inputs for t, inputs in jobs if t is task]
        for inputs in task_jobs:
            written.append(_write(Path(out_dir), task, inputs, predictions[task.name, inputs.name]))
            say(f"Wrote {written[-1]}")
        if split == "dev":
            for line in _dev_scores(task, task_jobs, predictions, references, models[task.name], record, glue_dir):
                say(line)
    return written


def _glue_folder(data_dir: str | Path | None, config: dict) -> Path | None:
    """``--data-dir``, else the GLUE folder the run was trained on (its record's
    ``config.data_dir``), else ``$MTLVSIFT_GLUE_DIR``, else None: the hub."""
    recorded = config.get("data_dir")
    if data_dir or not isinstance(recorded, str) or not recorded:
        return resolve_data_dir(data_dir)
    path = Path(recorded).expanduser()
    if not path.is_dir():
        raise MtlvsiftError(f"This run was trained on the GLUE folder {safe_text(recorded)} (its record's "
                            f"config.data_dir), which is not a folder here; pass the GLUE folder with "
                            f"--data-dir DIR.")
    return path


def _finished_record(run_dir: Path) -> RunRecord:
    if not (run_dir / RESULT_FILE).is_file():
        raise MtlvsiftError(f"{run_dir} holds no finished run ({RESULT_FILE} is missing). Give the "
                            f"folder of one seed, e.g. outputs/distilroberta-base/single/rte/seed-0, once it has finished.")
    try:
        return run_record.read_record(run_dir / RESULT_FILE)
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


def _tasks_to_predict(record: RunRecord, name: str | None, file) -> list[Task]:
    run_tasks = list(record.tasks)
    if name is not None:
        task = get_task(name)
        if task.name not in run_tasks:
            raise MtlvsiftError(f"--task {name}: the run trained {', '.join(run_tasks)}.")
        return [task]
    if record.target:
        return [get_task(record.target)]
    if file is not None:
        raise MtlvsiftError(f"This run has no target; with --file, name the task with --task "
                            f"({', '.join(run_tasks)}).")
    return [get_task(t) for t in run_tasks]


# --------------------------------------------------------------------------- inputs


def _inputs(task: Task, split: str | None, file, glue_dir: Path | None) -> list[Inputs]:
    if task.source is not None:
        table = user_data.read_table(file) if file else user_data.split_table(task, split)
        return [Inputs(task.name, user_data.texts(task, table), user_data.example_ids(task, table),
                       table.source, "dev" if split == "dev" and not file else "")]
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
        else:
            path = glue_dir / task.folder / (dev.file if split == "dev" else dev.file.replace("dev", "test"))
            if not path.is_file():
                raise MtlvsiftError(f"Missing {task.display} {split} file: expected {path}.")
            found.append(_glue_file(task, path, name))
        found[-1].split = Path(dev.file).stem if split == "dev" else ""
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


# --------------------------------------------------------------------------- dev scores


def _dev_labels(task: Task, inputs: Inputs, glue_dir: Path | None) -> np.ndarray:
    """The labels of a dev split, read (and checked) as training's evaluation reads them."""
    import numpy as np

    labels = np.asarray(load_split(task, inputs.split, glue_dir)["label"])
    if len(labels) != len(inputs.ids):
        raise MtlvsiftError(f"{inputs.source}: {len(inputs.ids)} rows to predict, but {len(labels)} "
                            f"labelled rows; is it a {task.display} dev file?")
    return labels


def _dev_scores(task: Task, task_jobs: list[Inputs], predictions: dict, references: dict,
                model: TaskModel, record: RunRecord, glue_dir: Path | None) -> list[str]:
    """``RTE dev: accuracy 72.50 (the record: 72.50 at step 12)``, and a note where the dev data
    is not the data the run was evaluated on (its fingerprint differs from the record's)."""
    from mtlvsift.train.evaluation.metrics import compute_task_metrics

    outputs = {inputs.split: (predictions[task.name, inputs.name], references[task.name, inputs.name])
               for inputs in task_jobs}
    metrics = compute_task_metrics(task, outputs)
    shown = "  ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items())
    recorded = "" if model.expected is None else \
        f" (the record: {task.main_metric} {100 * task.main_score(model.expected):.2f} at step {model.step})"
    lines = [f"{task.display} dev: {task.main_metric} {100 * task.main_score(metrics):.2f}{recorded}; "
             f"all metrics: {shown}"]
    fingerprints = (record.data_fingerprints or {}).get(task.name)
    for inputs in task_jobs:
        kept = fingerprints.get(inputs.split) if isinstance(fingerprints, dict) else None
        if isinstance(kept, str) and kept != data_fingerprint(task, inputs.split, glue_dir):
            lines.append(f"Note: {inputs.source} is not the {task.display} dev data this run was "
                         f"evaluated on (its fingerprint differs from the record's), so its scores "
                         f"are not the record's.")
    return lines


# --------------------------------------------------------------------------- model, files


def _predictions_of(folder: Path, run_dir: Path, jobs: list[tuple[Task, Inputs]], max_length: int,
                    batch_size: int, device: torch.device) -> dict[tuple[str, str], np.ndarray]:
    """The predictions of the model saved in ``folder`` for ``jobs``, by (task, file stem)."""
    from mtlvsift.train.model.multitask import MultiTaskModel, model_folder_problem

    problem = model_folder_problem(folder)
    if problem:
        raise MtlvsiftError(f"The best model of {run_dir} ({folder}) cannot be loaded ({problem}). "
                            f"Train the run again (its command with --overwrite).")
    model, tokenizer = MultiTaskModel.load(folder)
    model.to(device).eval()
    predictions = {}
    for task, inputs in jobs:
        if task.name not in model.task_names:
            raise MtlvsiftError(f"The best model of {run_dir} ({folder}) has no head for {task.name} "
                                f"(heads: {', '.join(model.task_names)}).")
        predictions[task.name, inputs.name] = _predict(model, tokenizer, task, model.task_names.index(task.name),
                                                       inputs, max_length, batch_size, device)
    return predictions


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
