"""A target's training examples embedded by an encoder: each example's first-token output (what
the task heads read), computed as evaluation computes dev scores (length-sorted batches, padded
once, or packed where the encoder allows it, no gradients), over a stratified subsample of at most ``max_examples``; on accelerate's
device (``PartialState``), in bf16 autocast with ``--mixed-precision bf16`` (or ``auto`` where
the device computes bf16 natively; torch's autocast
directly, as accelerate applies it: an ``Accelerator`` would fix the precision for the whole
process, and a training run in the same process may have set another)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from accelerate import PartialState

from mtlvsift.recommend.feature_cache import cache_key, cache_path, load, model_files_fingerprint, save
from mtlvsift.tasks import Task
from mtlvsift.train.batches.loader import TaskData, subsample_indices
from mtlvsift.train.batches.packing import PackedCollator
from mtlvsift.train.batches.padding import make_collator
from mtlvsift.train.batches.sampling import largest_remainder_quotas
from mtlvsift.train.data.glue import data_fingerprint, resolve_data_dir
from mtlvsift.train.data.tokenized import load_tokenized, tokenized_cache_key
from mtlvsift.train.evaluation.dev import build_eval_batches
from mtlvsift.train.model.encoders import position_offset, unsupported_reason, use_packed_attention
from mtlvsift.train.model.multitask import first_token_states
from mtlvsift.train.model.pretrained import load_encoder, load_tokenizer, resolve_model_path

PRECISIONS = ("auto", "no", "bf16")  # --mixed-precision; auto: bf16 where the device computes it natively
EVAL_BATCH_SIZE = 64
SAMPLE_SEED = 0  # the same examples for every candidate, so their scores compare


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU with bf16, a CPU with AVX512-BF16 or
    AMX (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch's own CPU feature checks (private, hence getattr)
        return any(getattr(torch.cpu, check, lambda: False)()
                   for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def embedding_precision(requested: str) -> str:
    """``--mixed-precision`` resolved for accelerate's device: ``auto`` is ``bf16`` where it is
    native, else ``no``. The rankings of the two agree (README: Which supporting task?)."""
    if requested not in PRECISIONS:
        raise ValueError(f"mixed precision {requested!r}: one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    return "bf16" if native_bf16(PartialState().device) else "no"


def stratified_indices(labels: np.ndarray, k: int, regression: bool, seed: int = SAMPLE_SEED) -> np.ndarray:
    """``k`` sorted row numbers (all when there are fewer): each class keeps its share
    (largest remainder); a regression's rows are drawn uniformly."""
    n = len(labels)
    if k >= n:
        return np.arange(n)
    if regression:
        return subsample_indices(n, k, seed)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = largest_remainder_quotas(counts / n, k)
    chosen = [np.flatnonzero(labels == c)[subsample_indices(int(size), int(q), seed + i)]
              for i, (c, size, q) in enumerate(zip(classes, counts, quotas))]
    return np.sort(np.concatenate(chosen))


def features_collator(encoder: torch.nn.Module, tokenizer, max_seq_length: int,
                      packing: bool) -> Callable[[list[dict]], dict]:
    """Packed batches (the encoder switched to packed attention) where the encoder allows them,
    as training packs them; padded ones otherwise."""
    if packing and unsupported_reason(encoder) is None:
        use_packed_attention(encoder, varlen=False)
        return PackedCollator(tokenizer.pad_token_id or 0, position_offset(encoder), max_seq_length,
                              budgeted=False)
    return make_collator(tokenizer, None)


class Embedding(NamedTuple):
    features: np.ndarray  # N x D first-token outputs, float64
    labels: np.ndarray  # N
    cached: bool  # read from the feature cache (feature_cache.py), not computed


def target_features(model: str, task: Task, data_dir: str | Path | None, max_examples: int,
                    max_seq_length: int, mixed_precision: str = "no", option: str = "--model",
                    packing: bool = True, use_cache: bool = True) -> Embedding:
    """``task``'s training examples under ``model`` (a hub id, a folder, a run's ``best/``;
    ``option`` names it in errors), from the feature cache when it holds them."""
    tokenizer = load_tokenizer(model, option)
    data_dir = resolve_data_dir(data_dir)
    train = load_tokenized(task, "train", tokenizer, max_seq_length, data_dir)
    all_labels = np.asarray(train["label"])
    rows = stratified_indices(all_labels, max_examples, task.is_regression)
    train, labels = train.select(rows), all_labels[rows]
    fingerprint = model_files_fingerprint(resolve_model_path(model)) if use_cache else None
    cached_at = None
    if fingerprint is not None:
        tokenized = tokenized_cache_key(task, "train", tokenizer, max_seq_length,
                                        data_fingerprint(task, "train", data_dir))
        cached_at = cache_path(cache_key(fingerprint, tokenized, rows, mixed_precision, packing))
        features = load(cached_at, len(rows), labels)
        if features is not None:
            return Embedding(features, labels, True)
    encoder = load_encoder(model, option)
    device = PartialState().device
    encoder.to(device).eval()
    batches = build_eval_batches([TaskData(task, train, {"train": train}, len(all_labels))],
                                 features_collator(encoder, tokenizer, max_seq_length, packing),
                                 EVAL_BATCH_SIZE, 0, 1)
    features = np.empty((len(train), encoder.config.hidden_size), dtype=np.float64)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision == "bf16")
    with torch.inference_mode(), autocast:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.inputs.items() if k != "task_ids"}
            states = first_token_states(encoder, **inputs)
            features[batch.positions] = states.float().cpu().numpy()
    if cached_at is not None:
        save(cached_at, features, labels)
    return Embedding(features, labels, False)
