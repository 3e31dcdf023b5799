"""The data of task-file tasks: csv, tsv, jsonl, json or parquet files, or a hub dataset.

Each split becomes the columns a GLUE split has (``text_a``, ``text_b`` for pairs, a float
``label``: the class id in the order of the task's ``labels``, or the number of a regression),
every row checked: a missing column names the columns found, a bad label names the first row
that has it, an empty split is an error. Values are untrusted: only text and numbers get through.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlvsift.errors import DataError, MtlvsiftError
from mtlvsift.tasks import Task
from mtlvsift.train.data.hub import require_hub
from mtlvsift.train.data.task_files import check_regular_file, label_text

TEXT_NAMES = ("text_a", "text_b")
# A line (or a cell) longer than this is not text a model reads: refused, never held whole.
MAX_LINE_LENGTH = 16 * 2**20
csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_LENGTH))  # csv's default: 131,072


def csv_problem(exc: csv.Error, kind: str) -> str:
    """The csv module's error about a line, in words that say what to fix."""
    if "field larger than field limit" in str(exc):
        return (f"has a cell longer than {MAX_LINE_LENGTH // 2**20} MiB; a model reads a few "
                f"thousand characters at most, so shorten it (a stray quote may join many lines).")
    if "new-line character seen in unquoted field" in str(exc):
        return ("holds a carriage return (\\r) inside a field; lines end with \\n (or \\r\\n), "
                "so remove the stray \\r.")
    return f"is not a valid {kind} line ({exc})."


@dataclass
class Table:
    """A file's (or hub split's) columns, and where each row came from, for messages."""

    source: str  # the file, or "hub dataset X, split Y"
    columns: dict[str, list]
    lines: list[int] | None = None  # the file line of each row (csv, tsv, jsonl)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def where(self, row: int) -> str:
        return f"line {self.lines[row]}" if self.lines else f"row {row + 1}"

    def column(self, name: str, task: Task) -> list:
        if name not in self.columns:
            fix = f" or the task file {task.source.task_file}" if task.source else ""
            raise DataError(f"has no column '{name}', which task '{task.name}' needs (columns "
                            f"found: {', '.join(map(str, self.columns)) or 'none'}). Fix the "
                            f"file{fix}.", self.source)
        return self.columns[name]


# --------------------------------------------------------------------------- reading files


def read_table(path: str | Path, header: bool = True) -> Table:
    """A data file by its extension; ``header=False`` (tsv only) names columns 0, 1, ..."""
    path = Path(path)
    check_regular_file(path, str(path))  # a named pipe would block, a device never end
    name = path.name.lower()
    if name.endswith((".csv", ".tsv")):
        return _read_delimited(path, "\t" if name.endswith(".tsv") else ",", header)
    if name.endswith(".jsonl"):
        return _read_jsonl(path)
    if name.endswith(".json"):
        return _read_json(path)
    if name.endswith(".parquet"):
        return _read_parquet(path)
    raise DataError("has an unknown format; use .csv, .tsv, .jsonl, .json or .parquet.", path)


def _text(path: Path) -> str:
    content = path.read_bytes()
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise DataError(f"byte 0x{content[exc.start]:02x} is not UTF-8; save the file as UTF-8.",
                        path, line) from None


def _read_delimited(path: Path, delimiter: str, header: bool) -> Table:
    # TSV files carry no quoting (as GLUE's); CSV files use the usual double quotes.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(_text(path), newline=""), delimiter=delimiter, quoting=quoting)
    names: list[str] | None = None
    rows, lines = [], []
    try:
        for row in reader:
            if not row or row == [""]:
                continue
            if names is None:
                names = row if header else [str(i) for i in range(len(row))]
                if len(set(names)) < len(names):
                    raise DataError("names a column twice in its header.", path, reader.line_num)
                if header:
                    continue
            if len(row) != len(names):
                raise DataError(f"expected {len(names)} columns (as the first row), found "
                                f"{len(row)}.", path, reader.line_num)
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(csv_problem(exc, path.suffix[1:].upper()), path, reader.line_num) from None
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names or [])}
    return Table(str(path), columns, lines)


def _records_table(source: str, records: list, lines: list[int] | None) -> Table:
    """Columns of a list of JSON objects; a key absent from a row gives None there."""
    names: dict[str, None] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            where = f"line {lines[i]}" if lines else f"item {i + 1}"
            raise DataError(f"{where} is not a JSON object ({{\"column\": value, ...}}).", source)
        names.update(dict.fromkeys(record))
    columns = {name: [record.get(name) for record in records] for name in names}
    return Table(source, columns, lines)


def _read_jsonl(path: Path) -> Table:
    records, lines = [], []
    # split("\n"), not splitlines(): JSON text may hold U+2028 and other line separators.
    for number, line in enumerate(_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"is not valid JSON ({exc.msg}).", path, number) from None
        lines.append(number)
    return _records_table(str(path), records, lines)


def _read_json(path: Path) -> Table:
    try:
        records = json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"is not valid JSON ({exc}).", path) from None
    if not isinstance(records, list):
        raise DataError("must hold a JSON list of objects, one per example (or use .jsonl).", path)
    return _records_table(str(path), records, None)


def _read_parquet(path: Path) -> Table:
    import pyarrow
    import pyarrow.parquet

    try:
        columns = pyarrow.parquet.read_table(path).to_pydict()
    except (pyarrow.ArrowException, OSError) as exc:
        raise DataError(f"is not a readable parquet file ({exc}).", path) from None
    for name, values in columns.items():
        columns[name] = [_utf8(value, path, name, row) for row, value in enumerate(values)]
    return Table(str(path), columns)


def _utf8(value: Any, path: Path, column: str, row: int) -> Any:
    """A binary cell as its UTF-8 text (else str() would make it "b'...'"); other values as is."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"row {row + 1}: column '{column}' holds bytes that are not UTF-8 text "
                        f"({_shown(value)}); store it as a UTF-8 string column.", path) from None


# --------------------------------------------------------------------------- the hub


def hub_dataset(task: Task, split: str):
    """The raw split of the task's hub dataset (a ``datasets.Dataset``), or one clear error."""
    import datasets

    source = task.source
    hub_split = split_source(task, split)
    require_hub(f"task '{task.name}' ({source.hub_path})", f"Save the data as files and give their "
                f"paths (train, dev) in the task file {source.task_file}")
    try:
        return datasets.load_dataset(source.hub_path, source.hub_name, split=hub_split)
    except Exception as exc:  # offline, unknown dataset, bad split: the same advice
        first = (str(exc).strip().splitlines() or [""])[0]
        raise MtlvsiftError(
            f"Could not load task '{task.name}' from the Hugging Face hub ({source.hub_path}, "
            f"split {hub_split}): {type(exc).__name__}: {first[:300]}. Offline, save the data as "
            f"files and give their paths (train, dev) in the task file {source.task_file}."
        ) from exc


def hub_table(task: Task, split: str) -> Table:
    """A split of the task's hub dataset; class-label ids become their names when those are the
    task's labels."""
    import datasets

    ds = hub_dataset(task, split)
    columns = ds.to_dict()
    feature = ds.features.get(task.label_column)
    if isinstance(feature, datasets.ClassLabel) and set(task.label_names) <= set(feature.names):
        columns[task.label_column] = [None if v is None or v < 0 else feature.int2str(v)
                                      for v in columns[task.label_column]]
    return Table(f"hub dataset {task.source.hub_path}, split {split_source(task, split)}", columns)


# --------------------------------------------------------------------------- a task's splits


def split_source(task: Task, split: str) -> str:
    """The file (or hub split) of a task's split: train, dev or test."""
    source = task.source.split_source(split)
    if source is None:
        raise MtlvsiftError(f"Task '{task.name}' has no {split} data: add `{split}:` to its task "
                            f"file {task.source.task_file}.")
    return source


def split_table(task: Task, split: str) -> Table:
    """The table of a task's split (train, dev or test) from its file or hub dataset."""
    if task.source.hub_path:
        return hub_table(task, split)
    return read_table(split_source(task, split))


def task_split(task: Task, split: str) -> dict[str, list]:
    """text_a, [text_b] and label of every row of a split, checked; an empty split is an error."""
    table = split_table(task, split)
    if not len(table):
        raise DataError(f"has no rows: the {split} split of task '{task.name}' is empty. Add "
                        f"examples, or point the task file {task.source.task_file} at another file.",
                        table.source)
    columns = texts(task, table)
    columns["label"] = [_label(task, value, table, row)
                        for row, value in enumerate(table.column(task.label_column, task))]
    return columns


def texts(task: Task, table: Table, names: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """The text columns (``names``, by default the task's) as text_a, [text_b]; a missing value
    is an error naming its row."""
    columns = {}
    for name, column in zip(TEXT_NAMES, names or task.text_columns):
        values = table.column(column, task)
        for row, value in enumerate(values):
            if value is None or isinstance(value, (list, dict)):
                raise DataError(f"{table.where(row)}: column '{column}' holds no text "
                                f"({_shown(value)}).", table.source)
        columns[name] = [str(value) for value in values]
    return columns


def example_ids(task: Task, table: Table) -> list[str]:
    """Each row's id: the task's ``id`` column, else the row number (from 0)."""
    if task.source.id_column is None:
        return [str(i) for i in range(len(table))]
    return [str(value) for value in table.column(task.source.id_column, task)]


def _label(task: Task, value: Any, table: Table, row: int) -> float:
    if task.is_regression:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise DataError(f"{table.where(row)}: label {_shown(value)} is not a number; task "
                            f"'{task.name}' is a regression.", table.source)
        return number
    text = label_text(value)
    if value is None or text not in task.label_names:
        raise DataError(f"{table.where(row)}: label {_shown(value)} is not in the labels of task "
                        f"'{task.name}' ({', '.join(task.label_names)}). Add it to `labels` in "
                        f"{task.source.task_file}, or fix the row.", table.source)
    return float(task.label_names.index(text))


def _shown(value: Any) -> str:
    """A value from the data, as an error message shows it (long ones cut)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
