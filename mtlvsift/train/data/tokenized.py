"""Tokenized splits, cached on disk: the key is the tokenizer's fingerprint, the maximum length,
the task and split, and the data file's sha256 (a task file's sha256 too). Each entry is checked
against its key when it is read (``ENTRY_FILE``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import datasets

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import Task
from mtlvsift.train.data.glue import _file_sha256, _from_hub, _hub_dataset, data_fingerprint, load_split

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# Bump when the tokenized format changes, so that old cache folders are not reused.
CACHE_FORMAT_VERSION = 2  # 2: each entry holds ENTRY_FILE
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Inside each entry: its key and the sha256 of its other files (checked when it is read: a swapped
# or damaged entry is tokenized again), and its rows (for whoever inspects the cache).
ENTRY_FILE = "mtlvsift_entry.json"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Class name + sha256 of the fast tokenizer's full JSON (else name_or_path + vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        spec = json.loads(backend.to_str())
        # Calling the tokenizer stores its last truncation/padding in the backend: not identity.
        spec.pop("truncation", None)
        spec.pop("padding", None)
        content = json.dumps(spec, sort_keys=True)
    else:
        content = json.dumps([tokenizer.name_or_path, sorted(tokenizer.get_vocab().items())])
    # These settings change the output but live outside the backend's JSON.
    content += json.dumps([list(tokenizer.model_input_names), tokenizer.truncation_side])
    return f"{type(tokenizer).__name__}-{hashlib.sha256(content.encode()).hexdigest()}"


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir``, else ``$MTLVSIFT_CACHE_DIR``, else ``~/.cache/mtlvsift``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("MTLVSIFT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mtlvsift"


def tokenized_cache_key(
    task: Task, split: str, tokenizer: PreTrainedTokenizerBase, max_seq_length: int, data_fp: str
) -> str:
    parts = [CACHE_FORMAT_VERSION, tokenizer_fingerprint(tokenizer), max_seq_length, task.name,
             split, data_fp]
    if task.source is not None:  # its columns and label order are the task file's
        parts.append(task.source.task_file_sha256)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _tokenize(
    ds: datasets.Dataset,
    task: Task,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    key: str,
) -> datasets.Dataset:
    inputs = [k for k in MODEL_INPUTS if k in tokenizer.model_input_names]
    small = {"input_ids": "int32", "attention_mask": "int8", "token_type_ids": "int8"}
    features = datasets.Features(
        {
            **{k: datasets.Sequence(datasets.Value(small[k])) for k in inputs},
            "label": datasets.Value("float32"),
            "length": datasets.Value("int32"),
        }
    )

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(
            batch["text_a"], batch.get("text_b"), truncation="longest_first",
            max_length=max_seq_length, return_length=True,
        )
        return {**{k: enc[k] for k in inputs}, "length": enc["length"]}

    return ds.map(
        encode, batched=True, remove_columns=[c for c in ds.column_names if c != "label"],
        features=features, keep_in_memory=True, new_fingerprint=key,  # no hashing of the tokenizer
        desc=f"Tokenizing {task.display} {split}",
    )


def load_tokenized(
    task: Task,
    split: str,
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int,
    data_dir: Path | None,
    cache_dir: Path | None = None,
    data_fp: str | None = None,
) -> datasets.Dataset:
    """input_ids, attention_mask, [token_type_ids], label, length; truncated, not padded.

    Cached in ``<cache root>/tokenized/<key>``; the key covers the tokenizer, the length, the task,
    the split and the data's fingerprint (``data_fp`` when the caller has it already), so a
    changed file is tokenized again.
    """
    raw = _hub_dataset(task, split) if data_dir is None and task.source is None else None
    if data_fp is None:
        data_fp = raw._fingerprint if raw is not None else data_fingerprint(task, split, data_dir)
    key = tokenized_cache_key(task, split, tokenizer, max_seq_length, data_fp)
    final = cache_root(cache_dir) / "tokenized" / key
    _check_entry(final, key, f"{task.display} {split}")
    if not final.is_dir():
        ds = _from_hub(task, raw) if raw is not None else load_split(task, split, data_dir)
        tokenized = _tokenize(ds, task, split, tokenizer, max_seq_length, key)
        # Write beside, then rename: a reader never sees a half-written folder, and of several
        # processes racing here (accelerate), the first rename wins and the others drop theirs.
        tmp = _beside(final, "tmp")
        try:
            tokenized.save_to_disk(str(tmp))
            _write_entry_file(tmp, key, len(tokenized))
            os.rename(tmp, final)
        except Exception as exc:  # a full disk, a cache root that is a file, a lost race
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.is_dir():
                raise MtlvsiftError(
                    f"Could not write the tokenization cache in {final.parent} ({exc}). Set "
                    f"MTLVSIFT_CACHE_DIR to a writable folder with free space, then rerun.") from exc
    try:
        return datasets.load_from_disk(str(final))
    except Exception as exc:
        raise MtlvsiftError(
            f"The tokenization cache {final} is unreadable ({exc}); delete that folder and rerun."
        ) from exc


# --------------------------------------------------------------------------- an entry's check


def _beside(final: Path, what: str) -> Path:
    """A hidden sibling of the entry, unique to this process."""
    return final.with_name(f".{final.name}.{what}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _files_sha256(folder: Path) -> str:
    """One sha256 over the names and bytes of the entry's files (its arrays, state, info)."""
    files = sorted(f for f in folder.iterdir() if f.name != ENTRY_FILE and f.is_file())
    return hashlib.sha256(json.dumps([[f.name, _file_sha256(f)] for f in files]).encode()).hexdigest()


def _write_entry_file(folder: Path, key: str, rows: int) -> None:
    record = {"key": key, "rows": rows, "sha256": _files_sha256(folder)}
    (folder / ENTRY_FILE).write_text(json.dumps(record))


def _entry_problem(folder: Path, key: str) -> str | None:
    """Why the entry does not hold the split its key names (swapped, edited, zeroed), or None."""
    try:
        record = json.loads((folder / ENTRY_FILE).read_text())
    except (OSError, ValueError):
        return f"has no readable {ENTRY_FILE}"
    if not isinstance(record, dict) or record.get("key") != key:
        return "holds the entry of another key"
    if record.get("sha256") != _files_sha256(folder):
        return "has files that changed since they were written"
    return None


def _check_entry(final: Path, key: str, what: str) -> None:
    """A stray file named like the entry is an error saying so; an entry that fails its check is
    removed (with a one-line notice) so that it is tokenized again."""
    if final.exists() and not final.is_dir():
        raise MtlvsiftError(
            f"{final} is a file where the tokenization cache keeps the folder of a tokenized split "
            f"({what}); it is not the cache's. Move or delete it, then rerun.")
    problem = final.is_dir() and _entry_problem(final, key)
    if not problem:
        return
    print(f"The tokenization cache entry {final} {problem}: tokenizing {what} again.")
    doomed = _beside(final, "bad")
    try:
        os.rename(final, doomed)  # out of the way at once; another process may have moved it
    except OSError as exc:
        if final.is_dir():
            raise MtlvsiftError(f"Could not remove the tokenization cache entry {final} ({exc}); "
                                f"delete that folder and rerun.") from None
    shutil.rmtree(doomed, ignore_errors=True)
