"""Padded collation: a batch's rows padded to its longest (the path when packing is off or the
encoder is of another family; ``packing.py`` is the other)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedTokenizerBase

from mtlvsift.train.data.tokenized import MODEL_INPUTS


class _Collator:
    """Pads model inputs with the tokenizer; a class, not a closure, so DataLoader workers can
    pickle it."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None):
        self.tokenizer = tokenizer
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        inputs = [k for k in MODEL_INPUTS if k in features[0]]
        batch = self.tokenizer.pad(
            [{k: f[k] for k in inputs} for f in features], padding="longest",
            pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt",
        )
        return {k: batch[k] for k in inputs} | label_and_task_tensors(features)


def label_and_task_tensors(features: list[dict]) -> dict[str, torch.Tensor]:
    """float32 ``labels`` and long ``task_ids`` of a batch (padded or packed)."""
    return {"labels": torch.tensor([f["label"] for f in features], dtype=torch.float32),
            "task_ids": torch.tensor([f["task_id"] for f in features], dtype=torch.long)}


def make_collator(
    tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None
) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """Batches features into padded tensors plus float32 ``labels`` and long ``task_ids``."""
    return _Collator(tokenizer, pad_to_multiple_of)
