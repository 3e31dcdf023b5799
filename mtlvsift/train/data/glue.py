"""Loading GLUE (a folder in the original layout, or the hub): every split checked, its file's
fingerprint, and its rows counted for a dry run. Tokenization is ``tokenized.py``.

Every split becomes a ``datasets.Dataset`` with ``text_a``, ``text_b`` (pair tasks only) and a
float32 ``label`` (the class id in ``task.label_names`` order, or the STS-B score). Tasks of task
files read their own files or hub dataset through ``user_data``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mtlvsift.errors import DataError, MtlvsiftError
from mtlvsift.tasks import Task
from mtlvsift.train.data import user_data
from mtlvsift.train.data.hub import require_hub

if TYPE_CHECKING:  # datasets is imported where a split is loaded: a dry run counts lines only
    import datasets

HUB_DATASET = "nyu-mll/glue"
# Header-less GLUE files and their column count; other header-less files use their first row's.
_HEADERLESS_WIDTH = {"cola": 4}
_LAYOUT_HINT = (
    "A GLUE folder holds one folder per task in the original GLUE layout, e.g. CoLA/train.tsv, "
    "CoLA/dev.tsv, SST-2/train.tsv, MNLI/dev_matched.tsv, MNLI/dev_mismatched.tsv "
    "(.tsv.gz accepted)."
)


# --------------------------------------------------------------------------- where the data is


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The GLUE folder: ``data_dir``, else ``$MTLVSIFT_GLUE_DIR``, else None (use the hub)."""
    source = "--data-dir"
    if data_dir is None or str(data_dir) == "":
        data_dir, source = os.environ.get("MTLVSIFT_GLUE_DIR") or None, "MTLVSIFT_GLUE_DIR"
    if data_dir is None:
        return None
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise MtlvsiftError(f"The GLUE folder {path} ({source}) does not exist. {_LAYOUT_HINT}")
    return path


def split_names(task: Task) -> list[str]:
    """``train`` and the dev splits, named after their files: dev, dev_matched, dev_mismatched."""
    return ["train"] + [Path(split.file).stem for split in task.dev_splits]


def _split_file(task: Task, split: str) -> str:
    if split == "train":
        return task.train_file
    for dev in task.dev_splits:
        if Path(dev.file).stem == split:
            return dev.file
    raise MtlvsiftError(
        f"{task.display} has no split '{split}'; its splits are {', '.join(split_names(task))}."
    )


def _hub_split(task: Task, split: str) -> str:
    _split_file(task, split)  # validates the name
    return next((d.hub_split for d in task.dev_splits if Path(d.file).stem == split), "train")


def _tsv_path(task: Task, split: str, data_dir: Path) -> Path:
    """The split's file (``.tsv``, else ``.tsv.gz``); a missing one says where it should be."""
    name = _split_file(task, split)
    folder = data_dir / task.folder
    if not folder.is_dir():
        raise MtlvsiftError(
            f"No {task.display} folder in the GLUE folder {data_dir}: expected {folder / name}. "
            f"Put the task's files there, or leave out --data-dir to use the hub. {_LAYOUT_HINT}"
        )
    for path in (folder / name, folder / (name + ".gz")):
        if path.is_file():
            return path
    raise MtlvsiftError(
        f"Missing {task.display} {split} file: expected {folder / name} (or {name}.gz). "
        f"Add it in the original GLUE format, or leave out --data-dir to use the hub."
    )


# --------------------------------------------------------------------------- GLUE TSV files


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file's lines (``.gz`` expanded) as bytes with their number; a line longer than
    ``user_data.MAX_LINE_LENGTH`` is an error, read no further (a bomb would fill the memory)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    limit = user_data.MAX_LINE_LENGTH
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(limit + 1), b""), start=1):
            if len(raw) > limit:
                raise DataError(f"is longer than {limit // 2**20} MiB; GLUE's lines are sentences, "
                                f"so this is not a GLUE file (or it lacks line breaks).", path, lineno)
            yield lineno, raw


def _decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as text, checked for UTF-8 one line at a time so errors get a line."""
    try:
        for lineno, raw in _raw_lines(path):
            try:
                # utf-8-sig on the first line only: MRPC headers begin with a BOM.
                yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not UTF-8; "
                    "save the file as UTF-8.", path, lineno,
                ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        message = f"is not a valid gzip file ({exc}); recompress it or unzip it."
        raise DataError(message, path) from None


def _column_index(
    task: Task, header: list[str] | None, column: str | int, path: Path, line: int
) -> int:
    if header is None:
        return int(column)
    if column not in header:
        raise DataError(
            f"the header lacks the column '{column}' that {task.display} needs "
            f"(found: {', '.join(header)}).", path, line,
        )
    if header.count(column) > 1:  # which one is meant cannot be known
        raise DataError(f"the header names the column '{column}' {header.count(column)} times; "
                        f"{task.display} reads it by name, so keep one.", path, line)
    return header.index(str(column))


def _parse_label(task: Task, value: str, path: Path, line: int) -> float:
    if not task.is_regression:
        if value not in task.label_names:
            raise DataError(
                f"label {value!r} is not a {task.display} label; valid labels: "
                f"{', '.join(task.label_names)}.", path, line,
            )
        return float(task.label_names.index(value))
    try:
        score = float(value)
    except ValueError:
        message = f"score {value!r} is not a number (scores are 0 to 5)."
        raise DataError(message, path, line) from None
    if not 0.0 <= score <= 5.0:  # also rejects nan
        raise DataError(f"score {value!r} is outside the range 0 to 5.", path, line)
    return score


def _read_tsv(task: Task, path: Path) -> dict[str, list]:
    """Columns text_a, [text_b], label of a GLUE TSV file, validating every row."""
    # QUOTE_NONE: GLUE files contain stray quotes that belong to the text.
    reader = csv.reader(_decoded_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    columns: dict[str, list] = {"text_a": [], "text_b": [], "label": []}
    header: list[str] | None = None
    width = _HEADERLESS_WIDTH.get(task.name)
    text_idx: list[int] = []
    label_idx = -1
    seen_rows = False
    try:
        for row in reader:
            if not row:  # blank line (e.g. at EOF): not a data row
                continue
            line = reader.line_num
            if not seen_rows:
                seen_rows = True
                if task.has_header:
                    header, width = row, len(row)
                text_idx = [_column_index(task, header, c, path, line) for c in task.text_columns]
                label_idx = _column_index(task, header, task.label_column, path, line)
                width = width or max(len(row), *(i + 1 for i in [*text_idx, label_idx]))
                if header is not None:
                    continue
            if len(row) != width:
                what = "the header's" if header is not None else f"{task.display}'s"
                raise DataError(
                    f"expected {width} tab-separated columns ({what} count), found {len(row)}.",
                    path, line,
                )
            columns["label"].append(_parse_label(task, row[label_idx], path, line))
            for name, idx in zip(("text_a", "text_b"), text_idx):
                columns[name].append(row[idx])
    except csv.Error as exc:
        raise DataError(user_data.csv_problem(exc, "TSV"), path, reader.line_num) from None
    if not seen_rows:
        raise DataError(f"is empty; expected the {task.display} data in GLUE's TSV format.", path)
    if not columns["label"]:
        raise DataError("has a header but no data rows.", path)
    if not task.is_pair:
        del columns["text_b"]
    return columns


# --------------------------------------------------------------------------- splits


def _features(task: Task) -> datasets.Features:
    import datasets

    texts = ["text_a", "text_b"][: len(task.text_columns)]
    return datasets.Features(
        {**{t: datasets.Value("string") for t in texts}, "label": datasets.Value("float32")}
    )


def _hub_dataset(task: Task, split: str) -> datasets.Dataset:
    return glue_hub_split(task, _hub_split(task, split))


def glue_hub_split(task: Task, hub_split: str) -> datasets.Dataset:
    """A raw split of nyu-mll/glue; any failure becomes one message that says what to do."""
    import datasets

    require_hub(f"{task.display} ({HUB_DATASET})", "Pass a GLUE folder in the original layout: "
                "--data-dir DIR (or set MTLVSIFT_GLUE_DIR)")
    try:
        return datasets.load_dataset(HUB_DATASET, task.hub_config, split=hub_split)
    except Exception as exc:  # offline, no network, hub down, bad cache: the same advice
        first_line = (str(exc).strip().splitlines() or [""])[0]
        reason = f"{type(exc).__name__}: {first_line}"
        raise MtlvsiftError(
            f"Could not load {task.display} from the Hugging Face hub ({HUB_DATASET}): "
            f"{reason[:300]}. Offline, pass a GLUE folder in the original layout: --data-dir DIR "
            "(or set MTLVSIFT_GLUE_DIR)."
        ) from exc


def _from_hub(task: Task, raw: datasets.Dataset) -> datasets.Dataset:
    import datasets

    names = ["text_a", "text_b"][: len(task.hub_text_columns)]
    ds = raw.select_columns([*task.hub_text_columns, "label"])
    ds = ds.rename_columns(dict(zip(task.hub_text_columns, names)))
    return ds.cast_column("label", datasets.Value("float32"))


def load_split(task: Task, split: str, data_dir: Path | None) -> datasets.Dataset:
    """One split as text_a, [text_b], label (float32): from ``data_dir`` if given, else the hub."""
    import datasets

    if task.source is not None:  # a task file's task: its own files or hub dataset
        return datasets.Dataset.from_dict(user_data.task_split(task, split), features=_features(task))
    if data_dir is None:
        return _from_hub(task, _hub_dataset(task, split))
    path = _tsv_path(task, split, Path(data_dir))
    return datasets.Dataset.from_dict(_read_tsv(task, path), features=_features(task))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(task: Task, split: str, data_dir: Path | None) -> str:
    """sha256 of the TSV file's bytes, or the hub dataset's fingerprint."""
    if task.source is not None:  # a task file's task
        if task.source.hub_path:
            return user_data.hub_dataset(task, split)._fingerprint
        return _file_sha256(Path(user_data.split_source(task, split)))
    if data_dir is None:
        return _hub_dataset(task, split)._fingerprint
    return _file_sha256(_tsv_path(task, split, Path(data_dir)))


# --------------------------------------------------------------------------- counting rows (a dry run)


def count_rows(path: Path, has_header: bool) -> int:
    """Data rows of a GLUE TSV file (``.gz`` too): its non-empty lines, less the header."""
    lines = sum(1 for _, line in _raw_lines(path) if line.rstrip(b"\r\n"))
    return max(0, lines - int(has_header))


def train_rows(task: Task, data_dir: Path | None) -> int:
    """One task's training rows: a task file's data read by its reader (never tokenized), a GLUE
    TSV file's lines, or GLUE's official size when the data comes from the hub."""
    if task.source is not None:
        return len(user_data.split_table(task, "train"))
    if data_dir is None:  # the hub: without downloading anything
        return task.train_size
    return count_rows(_tsv_path(task, "train", data_dir), task.has_header)
