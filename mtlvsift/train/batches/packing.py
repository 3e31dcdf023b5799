"""Packed batches: the encoder computes a micro-batch's real tokens only, never padding.

A padded batch of B rows costs B x (longest row) tokens in every linear layer; a heterogeneous
RTE + SST-2 batch pads its short SST-2 rows to the longest RTE row, so most of that work is
padding. ``PackedCollator`` instead lays the rows end to end in one sequence (1, T) with per-row
``position_ids`` (RoBERTa counts from padding_idx + 1) and ``token_type_ids``, and a
``PackedLayout``: each row's first token (what the heads read), the row boundaries (cu_seqlens),
and where each token sits in the attention layout. The attention that reads the layout is
``model/packed_attention.py``; which encoders may be packed, ``model/encoders.py``.

With ``--compile``, T is rounded up to a token budget (``token_budget``) and the attention layout
is one block, so the compiled encoder sees few distinct shapes: one graph per budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mtlvsift.train.batches.padding import label_and_task_tensors

LENGTH_GROUPS = (16, 32, 64)  # attention blocks: rows of up to 16 tokens, 17-32, 33-64, longer
BUDGET_QUANTUM = 64


@dataclass
class PackedLayout:
    """Where the rows of a packed micro-batch lie; passed to the encoder as ``packed_layout``."""

    first_token: torch.Tensor  # (rows,) each row's first token in the packed sequence
    cu_seqlens: torch.Tensor  # (segments + 1,) int32: the rows' boundaries, then the filler's pieces
    max_length: int  # the longest segment (the varlen kernel's bound)
    slots: torch.Tensor  # (T,) each token's place in the concatenated attention blocks; filler: last
    blocks: list[torch.Tensor] = field(default_factory=list)  # (rows_b, length_b): the token in each
    # place; where a row is shorter than its block, token 0 (masked as a key, its output unused)
    inside: list[torch.Tensor] = field(default_factory=list)  # (rows_b, length_b): the place holds
    # a token of the row (the key mask)

    def to(self, device, non_blocking: bool = False) -> "PackedLayout":
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return PackedLayout(move(self.first_token), move(self.cu_seqlens), self.max_length,
                            move(self.slots), [move(b) for b in self.blocks], [move(m) for m in self.inside])

    def pin_memory(self) -> "PackedLayout":  # DataLoader(pin_memory=True) calls it
        return PackedLayout(self.first_token.pin_memory(), self.cu_seqlens.pin_memory(), self.max_length,
                            self.slots.pin_memory(), [b.pin_memory() for b in self.blocks],
                            [m.pin_memory() for m in self.inside])


def token_budget(tokens: int) -> int:
    """The packed length under --compile: the next 64 x 2^(k/4), rounded up to a multiple of 64.

    Consecutive budgets differ by about 19%, so a run's training batches fall into two or three.
    """
    k = max(0, math.ceil(4 * math.log2(max(tokens, 1) / BUDGET_QUANTUM)))
    budget = BUDGET_QUANTUM * math.ceil(2 ** (k / 4))
    return max(budget, BUDGET_QUANTUM * math.ceil(tokens / BUDGET_QUANTUM))


class PackedCollator:
    """Features (unpadded token lists) -> one packed sequence and its ``PackedLayout``.

    A class, not a closure, so that DataLoader workers can pickle it.
    """

    def __init__(self, pad_token_id: int, position_offset: int, max_length: int, budgeted: bool):
        self.pad_token_id = pad_token_id
        self.position_offset = position_offset  # RoBERTa: padding_idx + 1; BERT: 0
        self.max_length = max_length  # the tokenizer's truncation length
        self.budgeted = budgeted  # --compile: T rounded up to token_budget, one attention block

    def __call__(self, features: list[dict]) -> dict:
        lengths = np.array([len(f["input_ids"]) for f in features], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        real = int(starts[-1])
        total = token_budget(real) if self.budgeted else real
        within = np.arange(real) - np.repeat(starts[:-1], lengths)  # each token's place in its row

        def packed(key: str, fill: int, values: np.ndarray | None = None) -> torch.Tensor:
            row = np.full(total, fill, dtype=np.int64)
            row[:real] = np.concatenate([f[key] for f in features]) if values is None else values
            return torch.from_numpy(row)[None]

        batch = {"input_ids": packed("input_ids", self.pad_token_id),
                 "position_ids": packed("input_ids", self.position_offset, within + self.position_offset)}
        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = packed("token_type_ids", 0)
        # The filler (budget minus real tokens) is cut into pieces no longer than the bound.
        bound = self.max_length if self.budgeted else int(lengths.max())
        pieces = list(range(real + bound, total, bound)) + ([total] if total > real else [])
        groups = np.zeros(len(lengths), dtype=np.int64) if self.budgeted else \
            np.searchsorted(LENGTH_GROUPS, lengths)
        slots, blocks, inside = self._blocks(lengths, starts, groups, total)
        batch["packed_layout"] = PackedLayout(
            first_token=torch.from_numpy(starts[:-1].copy()),
            cu_seqlens=torch.tensor(starts.tolist() + pieces, dtype=torch.int32),
            max_length=bound, slots=slots, blocks=blocks, inside=inside)
        return batch | label_and_task_tensors(features)

    @staticmethod
    def _blocks(lengths: np.ndarray, starts: np.ndarray, groups: np.ndarray,
                total: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Per length group, a (rows, longest) block of token indices and its key mask; each
        token's place in the blocks laid end to end."""
        slots = np.empty(total, dtype=np.int64)
        blocks, masks, offset = [], [], 0
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            column = np.arange(lengths[members].max())
            inside = column < lengths[members, None]
            places = np.where(inside, starts[members, None] + column, 0)
            slots[places[inside]] = offset + np.flatnonzero(inside.ravel())
            offset += places.size
            blocks.append(torch.from_numpy(places))
            masks.append(torch.from_numpy(inside))
        slots[int(starts[-1]):] = offset  # the filler's place: one zero output after all blocks
        return torch.from_numpy(slots), blocks, masks


def mark_budgeted_shapes(inputs: dict[str, torch.Tensor], layout: PackedLayout) -> None:
    """For a compiled encoder: T (a budget) is static, the attention block's shape is dynamic, so
    each budget compiles one graph whatever the rows' lengths."""
    for tensor in inputs.values():
        torch._dynamo.mark_static(tensor, 1)
    torch._dynamo.mark_static(layout.slots, 0)
    for block in layout.blocks + layout.inside:
        torch._dynamo.maybe_mark_dynamic(block, 0)
        torch._dynamo.maybe_mark_dynamic(block, 1)
    torch._dynamo.maybe_mark_dynamic(layout.cu_seqlens, 0)
