"""Embeddings kept between recommend calls, as tokenized datasets are: ranking one more candidate,
or the same target again, embeds only the models not seen before with those settings.

A cached file is ``<cache root>/features/<key>.npz`` (the tokenized cache's root,
``$MTLVSIFT_CACHE_DIR`` or ``~/.cache/mtlvsift``). The key covers the model's files (names, sizes,
modification times, so that a retrained ``best/`` is embedded again), the tokenized training split
(tokenizer, length, task, data fingerprint), the rows chosen, the precision and the batching. The
files are untrusted: read without pickle, checked for shape and finite values, and recomputed
when anything is off. A model that is not on disk (a hub id outside the local hub cache) is not
cached.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from mtlvsift.run_folder import atomic_write
from mtlvsift.train.data.tokenized import cache_root

FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt")


def model_files_fingerprint(model_path: str) -> str | None:
    """The model folder's files (name, size, mtime), or None when it is not a local folder and
    not in the local hub cache."""
    folder = Path(model_path)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model_path, local_files_only=True))
        except Exception:  # not cached, or not a hub id: embed every time
            return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None
    return json.dumps([[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns]
                       for p in files])


def cache_key(model_fingerprint: str, tokenized_key: str, rows: np.ndarray, mixed_precision: str,
              packed: bool) -> str:
    parts = [FORMAT_VERSION, model_fingerprint, tokenized_key,
             hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest(), mixed_precision,
             packed]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def cache_path(key: str, cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / "features" / f"{key}.npz"


def load(path: Path, rows: int, labels: np.ndarray) -> np.ndarray | None:
    """The cached (rows x D) features, or None when the file is missing or not what was written
    for these rows and labels (it is then computed again and replaced)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            features, cached_labels = data["features"], data["labels"]
    except (OSError, ValueError, KeyError, EOFError):  # missing, damaged, not an npz, pickled
        return None
    if (features.dtype != np.float64 or features.ndim != 2 or features.shape[0] != rows
            or not np.isfinite(features).all() or cached_labels.shape != labels.shape
            or not np.array_equal(cached_labels, labels)):
        return None
    return features


def save(path: Path, features: np.ndarray, labels: np.ndarray) -> None:
    """Whole or not at all; a cache that cannot be written costs only the next call's time."""
    buffer = io.BytesIO()
    np.savez(buffer, features=features, labels=labels)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())
    except OSError:
        pass
