"""Task files (``--task-file``): your own classification or regression tasks next to GLUE's.

A YAML or JSON file holds ``tasks:``, a list of task definitions (see the README, "Your own
task"). Everything in it is checked here, before any data is read or any folder is written:
unknown keys, names (lower-case letters, digits, underscores; no GLUE name), the data source
(``train`` + ``dev`` [+ ``test``] files that exist, or a ``hub`` dataset), text and label
columns, labels or ``regression: true``, metrics. The data itself is checked when it is read
(``mtlvsift.train.user_data``). Each task becomes a ``tasks.Task`` whose ``TaskSource`` carries
the file's sha256, so that a run made with another version of the file is never resumed.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import GLUE_TASKS, USER_TASK_NAME, Task, TaskSource, display_name, glue_key, \
    set_user_tasks

TASK_KEYS = ("name", "train", "dev", "test", "hub", "text", "label", "labels", "regression",
             "metrics", "main_metric", "id")
HUB_KEYS = ("path", "name", "splits")
SPLITS = ("train", "dev", "test")  # test is optional
DATA_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
CLASSIFICATION_METRICS = ("accuracy", "f1", "f1_macro", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
BUILTIN_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS
MAX_TASK_FILE_BYTES = 2**20  # read no more: a task file is a few lines per task


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (YAML 1.1 would read the labels [yes, no] as
    [True, False].)"""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def label_text(value: Any) -> str:
    """How a label is compared: as text, whatever the file's type (1, 1.0 and "1" are "1")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_regular_file(path: Path, what: str) -> None:
    """Refuse what is not a regular file before it is opened: reading a named pipe blocks until
    someone writes to it, a device such as /dev/zero never ends."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise MtlvsiftError(f"{what} cannot be read: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
        raise MtlvsiftError(f"{what} is {kind}, not a regular file; give the path of a file.")


_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
               (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"))


def load_task_files(paths: Iterable[str | Path]) -> list[Task]:
    """Parse every task file and register its tasks for this process (replacing earlier ones)."""
    tasks: dict[str, Task] = {}
    for path in paths:
        for task in parse_task_file(Path(path)):
            if task.name in tasks:
                raise MtlvsiftError(
                    f"Task '{task.name}' is defined twice: in {tasks[task.name].source.task_file} "
                    f"and in {task.source.task_file}. Give each task one name.")
            tasks[task.name] = task
    set_user_tasks(list(tasks.values()))
    return list(tasks.values())


def parse_task_file(path: Path) -> list[Task]:
    """The tasks of one task file; any mistake is one error naming the file and the task."""
    path = path.expanduser().resolve()
    check_regular_file(path, f"The task file {path}")
    try:
        with open(path, "rb") as handle:
            content = handle.read(MAX_TASK_FILE_BYTES + 1)
    except OSError as exc:
        raise MtlvsiftError(f"Cannot read the task file {path}: {exc.strerror or exc}.") from None
    if len(content) > MAX_TASK_FILE_BYTES:
        raise MtlvsiftError(f"The task file {path} is larger than {MAX_TASK_FILE_BYTES // 2**20} MiB; "
                            f"a task file defines tasks, its data lives in the files it names.")
    raw = _parse(path, content)
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list) or not raw["tasks"]:
        raise MtlvsiftError(f"{path}: a task file holds `tasks:`, a list of task definitions "
                            f"(see the README, 'Your own task').")
    _no_unknown_keys(raw, ("tasks",), f"{path}")
    sha256 = hashlib.sha256(content).hexdigest()
    tasks = [_task(path, sha256, i, entry) for i, entry in enumerate(raw["tasks"], start=1)]
    names = [t.name for t in tasks]
    for name in names:
        if names.count(name) > 1:
            raise MtlvsiftError(f"{path}: task '{name}' is defined twice; give each task one name.")
    return tasks


def _parse(path: Path, content: bytes) -> Any:
    try:
        text = content.decode("utf-8-sig")
        if path.suffix.lower() == ".json":
            return json.loads(text)
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MtlvsiftError(f"{path} is not valid {path.suffix[1:].upper()}: {first}") from None
    raise MtlvsiftError(f"{path}: a task file is YAML (.yaml, .yml) or JSON (.json).")


def _no_unknown_keys(entry: dict, valid: tuple[str, ...], where: str) -> None:
    unknown = [str(k) for k in entry if k not in valid]
    if unknown:
        raise MtlvsiftError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(repr(k) for k in unknown)}. Valid keys: {', '.join(valid)}.")


def _task(path: Path, sha256: str, number: int, entry: Any) -> Task:
    if not isinstance(entry, dict):
        raise MtlvsiftError(f"{path}: task #{number} is not a mapping of keys to values.")
    name = entry.get("name")
    where = f"{path}: task {name[:80]!r}" if isinstance(name, str) else f"{path}: task #{number}"
    _no_unknown_keys(entry, TASK_KEYS, where)
    name = _name(entry, where)
    texts = _texts(entry, where)
    label = _string(entry, "label", where)
    regression = entry.get("regression", False)
    if not isinstance(regression, bool):
        raise MtlvsiftError(f"{where}: `regression` is true or false.")
    labels = _labels(entry, regression, where)
    metrics = _metrics(entry, path, regression, len(labels), where)
    main = _main_metric(entry, metrics, where)
    id_column = entry.get("id")
    if id_column is not None and not isinstance(id_column, str):
        raise MtlvsiftError(f"{where}: `id` is the name of the column that holds example ids.")
    source = TaskSource(task_file=str(path), task_file_sha256=sha256, id_column=id_column,
                        **_source(entry, path, where))
    return Task(name=name, display=display_name(name), folder="", hub_config="", text_columns=texts,
                label_column=label, hub_text_columns=texts, label_names=labels,
                metrics=metrics, main_metric=main, train_size=0, source=source)


def _name(entry: dict, where: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not USER_TASK_NAME.fullmatch(name):
        raise MtlvsiftError(f"{where}: `name` must be lower-case letters, digits and underscores, "
                            f"starting with a letter, at most 64 (e.g. my_task).")
    if glue_key(name) in GLUE_TASKS:
        raise MtlvsiftError(f"{where}: the name clashes with the GLUE task "
                            f"{GLUE_TASKS[glue_key(name)].display}; choose another name.")
    return name


def _string(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise MtlvsiftError(f"{where}: `{key}` (a column name) is required.")
    return value


def _texts(entry: dict, where: str) -> tuple[str, ...]:
    texts = entry.get("text")
    texts = [texts] if isinstance(texts, str) else texts
    if (not isinstance(texts, list) or len(texts) not in (1, 2)
            or not all(isinstance(t, str) and t for t in texts)):
        raise MtlvsiftError(f"{where}: `text` is one or two column names, e.g. [sentence] or "
                            f"[premise, hypothesis].")
    return tuple(texts)


def _labels(entry: dict, regression: bool, where: str) -> tuple[str, ...]:
    labels = entry.get("labels")
    if regression:
        if labels is not None:
            raise MtlvsiftError(f"{where}: give `labels` (classification) or `regression: true`, "
                                f"not both.")
        return ()
    if not isinstance(labels, list) or len(labels) < 2 or \
            any(isinstance(v, (list, dict)) or v is None for v in labels):
        raise MtlvsiftError(f"{where}: give `labels`, the list of its labels (at least two), or "
                            f"`regression: true` for a number.")
    texts = tuple(label_text(v) for v in labels)
    if len(set(texts)) < len(texts):
        raise MtlvsiftError(f"{where}: `labels` lists a label twice.")
    return texts


def _metrics(entry: dict, path: Path, regression: bool, num_labels: int,
             where: str) -> tuple[str, ...]:
    """Built-in metric names, or absolute paths of local evaluate modules."""
    builtin = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    metrics = entry.get("metrics", ["spearman", "pearson"] if regression else ["accuracy"])
    metrics = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise MtlvsiftError(f"{where}: `metrics` is a list of {', '.join(builtin)} or paths of "
                            f"local evaluate modules.")
    resolved = []
    for metric in metrics:
        if metric in builtin:
            if metric == "f1" and num_labels > 2:
                raise MtlvsiftError(f"{where}: f1 is binary F1 (of the second label); with "
                                    f"{num_labels} labels use f1_macro.")
            resolved.append(metric)
        elif metric.endswith(".py") or "/" in metric:
            module = (path.parent / metric).resolve()
            if not module.exists():
                raise MtlvsiftError(f"{where}: the evaluate module {metric} is not found "
                                    f"(looked at {module}).")
            _check_metric_module(module, metric, where)
            resolved.append(str(module))
        else:
            kind = "a regression" if regression else "a classification"
            raise MtlvsiftError(f"{where}: unknown metric '{metric}' for {kind} task. Use "
                                f"{', '.join(builtin)}, or the path of a local evaluate module (.py).")
    return tuple(resolved)


def _check_metric_module(module: Path, metric: str, where: str) -> None:
    """A module that cannot be imported would fail at the first evaluation, after training."""
    from mtlvsift.train.evaluation.metrics import metric_module_problem

    check_regular_file(module, f"{where}: the evaluate module {metric}")
    problem = metric_module_problem(str(module))
    if problem:
        raise MtlvsiftError(f"{where}: the evaluate module {metric} cannot be loaded ({problem}). "
                            f"Fix the module, or install the packages it imports.")


def _main_metric(entry: dict, metrics: tuple[str, ...], where: str) -> str:
    """``main_metric``, by default the first metric; with an evaluate module, a key it returns."""
    modules = [m for m in metrics if m not in BUILTIN_METRICS]
    if "main_metric" not in entry:
        if metrics[0] in modules:
            raise MtlvsiftError(f"{where}: name `main_metric` (a key that the evaluate module "
                                f"{metrics[0]} returns) when the first metric is a module.")
        return metrics[0]
    main = entry["main_metric"]
    builtin = main in metrics and main not in modules
    if isinstance(main, str) and main and (builtin or modules):
        return main  # a module's keys are known once it runs: checked at the first evaluation
    raise MtlvsiftError(f"{where}: `main_metric` must be one of its metrics "
                        f"({', '.join(m for m in metrics if m not in modules)}).")


def _source(entry: dict, path: Path, where: str) -> dict[str, Any]:
    """The TaskSource fields: ``files`` (absolute paths) or the ``hub_*`` fields."""
    hub = entry.get("hub")
    files = {split: entry[split] for split in SPLITS if split in entry}
    if hub is not None:
        if files:
            raise MtlvsiftError(f"{where}: give data files (train, dev, test) or `hub`, not both.")
        return _hub_source(hub, where)
    missing = [s for s in ("train", "dev") if s not in files]
    if missing:
        raise MtlvsiftError(f"{where}: `{missing[0]}` (a data file) is required, or `hub`.")
    resolved = []
    for split, value in files.items():
        if not isinstance(value, str) or not value:
            raise MtlvsiftError(f"{where}: `{split}` is the path of a data file.")
        file = (path.parent / value).resolve()  # relative to the task file
        if not any(file.name.endswith(ext) for ext in DATA_FORMATS):
            raise MtlvsiftError(f"{where}: the {split} file {value} has an unknown format; the "
                                f"extension picks it: {', '.join(DATA_FORMATS)}.")
        if not file.exists():
            raise MtlvsiftError(f"{where}: the {split} file {value} is not found (looked at "
                                f"{file}). Paths are relative to the task file.")
        check_regular_file(file, f"{where}: the {split} file {value}")
        resolved.append((split, str(file)))
    return {"files": tuple(resolved)}


def _hub_source(hub: Any, where: str) -> dict[str, Any]:
    if not isinstance(hub, dict):
        raise MtlvsiftError(f"{where}: `hub` is a mapping: {{path: ..., name: ..., splits: "
                            f"{{train: ..., dev: ...}}}}.")
    _no_unknown_keys(hub, HUB_KEYS, f"{where}, hub")
    hub_path, hub_name, splits = hub.get("path"), hub.get("name"), hub.get("splits")
    if not isinstance(hub_path, str) or not hub_path:
        raise MtlvsiftError(f"{where}, hub: `path` (the dataset's hub id) is required.")
    if hub_name is not None and not isinstance(hub_name, str):
        raise MtlvsiftError(f"{where}, hub: `name` is the dataset's configuration name, or null.")
    if not isinstance(splits, dict):
        raise MtlvsiftError(f"{where}, hub: `splits` maps train, dev (and test) to the dataset's "
                            f"split names.")
    _no_unknown_keys(splits, SPLITS, f"{where}, hub splits")
    if "train" not in splits or "dev" not in splits or \
            not all(isinstance(v, str) and v for v in splits.values()):
        raise MtlvsiftError(f"{where}, hub: `splits` needs train and dev, each the name of a split "
                            f"of the dataset.")
    return {"hub_path": hub_path, "hub_name": hub_name,
            "hub_splits": tuple((s, splits[s]) for s in SPLITS if s in splits)}
