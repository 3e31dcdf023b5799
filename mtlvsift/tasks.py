"""The task registry: GLUE's nine tasks as data.

Each task says where its files are in the original GLUE layout, which columns hold the texts and
the label, how labels map to ids (the order of the ``nyu-mll/glue`` hub dataset), its metrics and
its training size. GLUE names are accepted case- and punctuation-insensitively (``SST-2`` =
``sst2``). Tasks defined by task files (``--task-file``, parsed by ``mtlvsift.train.task_files``)
are registered next to them for the process (``set_user_tasks``) and carry a ``TaskSource``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mtlvsift.errors import MtlvsiftError


@dataclass(frozen=True)
class DevSplit:
    """One evaluation split: its GLUE file, its hub split and the prefix of its metric names."""

    file: str  # e.g. "dev_matched.tsv"
    hub_split: str  # e.g. "validation_matched"
    metric_prefix: str = ""  # "" for the main split, "mm_" for MNLI mismatched


@dataclass(frozen=True)
class TaskSource:
    """Where a task file's task reads its data: files (absolute paths) or a hub dataset."""

    task_file: str  # absolute path of the task file that defined the task
    task_file_sha256: str  # the file's content hash: part of a run's identity and cache keys
    files: tuple[tuple[str, str], ...] = ()  # (split, path): train, dev and optionally test
    hub_path: str | None = None
    hub_name: str | None = None
    hub_splits: tuple[tuple[str, str], ...] = ()  # (split, hub split name)
    id_column: str | None = None  # the column with each example's id (predictions)

    def split_source(self, split: str) -> str | None:
        """The file (or hub split) of ``split``: train, dev or test; None when not given."""
        return dict(self.files or self.hub_splits).get(split)


@dataclass(frozen=True)
class Task:
    name: str  # canonical: lower case, no punctuation ("sst2")
    display: str  # as GLUE writes it ("SST-2")
    folder: str  # folder in the GLUE layout ("SST-2")
    hub_config: str  # config of nyu-mll/glue
    text_columns: tuple[str | int, ...]  # header names, or column indices for header-less files
    label_column: str | int
    hub_text_columns: tuple[str, ...]
    label_names: tuple[str, ...]  # label strings in the files, in hub id order; () for regression
    metrics: tuple[str, ...]  # metric names computed on the main dev split
    main_metric: str
    train_size: int  # official GLUE training size
    dev_splits: tuple[DevSplit, ...] = (DevSplit("dev.tsv", "validation"),)
    has_header: bool = True
    source: TaskSource | None = None  # a task file's task; None for GLUE's own data

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Outputs of the task's head: 1 for a regression."""
        return len(self.label_names) or 1

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def train_file(self) -> str:
        return "train.tsv"

    @property
    def lowest_score(self) -> float:
        """The main metric's lower bound: -1 for a correlation (CoLA's MCC, STS-B's Spearman)."""
        return -1.0 if self.main_metric in ("mcc", "spearman", "pearson") else 0.0

    def main_score(self, metrics: dict[str, float]) -> float:
        """The model-selection score among this task's metrics (MCC for CoLA, ...)."""
        return float(metrics[self.main_metric])


_BINARY = ("0", "1")

# Ordered by descending training size, the order of the paper's Figure 1.
GLUE_TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            name="mnli", display="MNLI", folder="MNLI", hub_config="mnli",
            text_columns=("sentence1", "sentence2"), label_column="gold_label",
            hub_text_columns=("premise", "hypothesis"),
            label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",), main_metric="accuracy", train_size=392702,
            dev_splits=(
                DevSplit("dev_matched.tsv", "validation_matched"),
                DevSplit("dev_mismatched.tsv", "validation_mismatched", "mm_"),
            ),
        ),
        Task(
            name="qqp", display="QQP", folder="QQP", hub_config="qqp",
            text_columns=("question1", "question2"), label_column="is_duplicate",
            hub_text_columns=("question1", "question2"), label_names=_BINARY,
            metrics=("accuracy", "f1", "acc_f1_mean"), main_metric="acc_f1_mean", train_size=363846,
        ),
        Task(
            name="qnli", display="QNLI", folder="QNLI", hub_config="qnli",
            text_columns=("question", "sentence"), label_column="label",
            hub_text_columns=("question", "sentence"),
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",), main_metric="accuracy", train_size=104743,
        ),
        Task(
            name="sst2", display="SST-2", folder="SST-2", hub_config="sst2",
            text_columns=("sentence",), label_column="label", hub_text_columns=("sentence",),
            label_names=_BINARY, metrics=("accuracy",), main_metric="accuracy", train_size=67349,
        ),
        Task(
            name="cola", display="CoLA", folder="CoLA", hub_config="cola",
            text_columns=(3,), label_column=1, hub_text_columns=("sentence",), label_names=_BINARY,
            metrics=("mcc",), main_metric="mcc", train_size=8551, has_header=False,
        ),
        Task(
            name="stsb", display="STS-B", folder="STS-B", hub_config="stsb",
            text_columns=("sentence1", "sentence2"), label_column="score",
            hub_text_columns=("sentence1", "sentence2"), label_names=(),
            metrics=("pearson", "spearman"), main_metric="spearman", train_size=5749,
        ),
        Task(
            name="mrpc", display="MRPC", folder="MRPC", hub_config="mrpc",
            text_columns=("#1 String", "#2 String"), label_column="Quality",
            hub_text_columns=("sentence1", "sentence2"), label_names=_BINARY,
            metrics=("accuracy", "f1", "acc_f1_mean"), main_metric="acc_f1_mean", train_size=3668,
        ),
        Task(
            name="rte", display="RTE", folder="RTE", hub_config="rte",
            text_columns=("sentence1", "sentence2"), label_column="label",
            hub_text_columns=("sentence1", "sentence2"),
            label_names=("entailment", "not_entailment"),
            metrics=("accuracy",), main_metric="accuracy", train_size=2490,
        ),
        Task(
            name="wnli", display="WNLI", folder="WNLI", hub_config="wnli",
            text_columns=("sentence1", "sentence2"), label_column="label",
            hub_text_columns=("sentence1", "sentence2"), label_names=_BINARY,
            metrics=("accuracy",), main_metric="accuracy", train_size=635,
        ),
    ]
}

GLUE_TASK_NAMES: tuple[str, ...] = tuple(GLUE_TASKS)
# The order of the authors' scripts (bin/glue/*): their task 0 took the quota rounding correction.
AUTHORS_TASK_ORDER: tuple[str, ...] = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte",
                                       "wnli")


# Tasks of the task files given to this process (--task-file), by name, and what such a name
# may be (it is also a folder name).
_USER_TASKS: dict[str, Task] = {}
USER_TASK_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def glue_key(name: str) -> str:
    """The punctuation-free lower-case form GLUE names are matched by (``SST-2`` -> ``sst2``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def normalize_task_name(name: str) -> str:
    """``SST-2``, ``sst_2`` and ``Sst2`` all become ``sst2``; other names (task files' tasks,
    lower-case letters, digits and underscores) are only lower-cased."""
    key = glue_key(name)
    return key if key in GLUE_TASKS else name.strip().lower()


def display_name(name: str) -> str:
    """GLUE's spelling of a canonical task name (SST-2), or the name in capitals for a user task."""
    return GLUE_TASKS[name].display if name in GLUE_TASKS else name.upper()


def set_user_tasks(tasks: list[Task]) -> None:
    """Make ``tasks`` (from task files) the user tasks of this process, replacing earlier ones."""
    _USER_TASKS.clear()
    _USER_TASKS.update({t.name: t for t in tasks})


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is an error that lists the valid ones."""
    key = normalize_task_name(name)
    task = GLUE_TASKS.get(key) or _USER_TASKS.get(key)
    if task is None:
        valid = ", ".join([t.display for t in GLUE_TASKS.values()] + sorted(_USER_TASKS))
        raise MtlvsiftError(f"Unknown task '{name}'. Valid tasks: {valid}. Define your own tasks "
                            f"in a task file (--task-file FILE).")
    return task


def get_tasks(names: list[str] | tuple[str, ...]) -> list[Task]:
    """Several tasks; a task named twice is an error."""
    tasks = [get_task(n) for n in names]
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise MtlvsiftError(f"Task '{task.display}' is listed twice; name each task once.")
        seen.add(task.name)
    return tasks


def user_task_names() -> list[str]:
    """The names of the task-file tasks registered for this process (--task-file)."""
    return sorted(_USER_TASKS)
