"""Packed batches: the encoder computes a micro-batch's real tokens only, never padding.

A padded batch of B rows costs B x (longest row) tokens in every linear layer; a heterogeneous
RTE + SST-2 batch pads its short SST-2 rows to the longest RTE row, so most of that work is
padding. ``PackedCollator`` instead lays the rows end to end in one sequence (1, T) with per-row
``position_ids`` (RoBERTa counts from padding_idx + 1) and ``token_type_ids``, and a
``PackedLayout``: each row's first token (what the heads read), the row boundaries (cu_seqlens),
and where each token sits in the attention layout.

Linear layers, layer norms and embeddings act on each token alone, so only attention must know
the rows. The attention function registered here (``PACKED_SDPA``) gathers q/k/v into padded
(rows, length) blocks, one block per length group (rows up to 16, 32, 64 tokens, longer), runs
SDPA with the key mask and the model's attention dropout, and gathers each token's output back:
attention pads a little, the expensive layers not at all. ``PACKED_VARLEN`` runs torch's varlen kernel on the
packed sequence instead (CUDA, bf16/fp16); that kernel has no dropout, so attention-probability
dropout is off there. Stock sdpa/eager/flex attention with packed position ids would let rows
attend to each other in an encoder: never rely on them.

With ``--compile``, T is rounded up to a token budget (``token_budget``) and the attention layout
is one block, so the compiled encoder sees few distinct shapes: one graph per budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.padding import label_and_task_tensors, make_collator

PACKED_SDPA = "mtlvsift_packed_sdpa"
PACKED_VARLEN = "mtlvsift_packed_varlen"
PACKABLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")
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


# --------------------------------------------------------------------------- attention


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: torch.Tensor | None,
                          dropout: float = 0.0, scaling: float | None = None,
                          packed_layout: PackedLayout | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Attention inside each row of a packed (1, H, T, D) sequence, per padded block; padded
    input (no ``packed_layout``) takes the stock SDPA path."""
    if packed_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D)
    outputs = []
    for places, inside in zip(packed_layout.blocks, packed_layout.inside):
        # index_select, not x[places]: its backward (index_add) is about twice as fast on a CPU
        q_b, k_b, v_b = (x.index_select(0, places.flatten()).unflatten(0, places.shape).transpose(1, 2)
                         for x in (q, k, v))  # (rows, H, length, D)
        out = F.scaled_dot_product_attention(q_b, k_b, v_b, attn_mask=inside[:, None, None, :],
                                             dropout_p=dropout, scale=scaling)
        outputs.append(out.transpose(1, 2).flatten(0, 1))
    outputs.append(q.new_zeros(1, *q.shape[1:]))  # the filler's output
    return torch.cat(outputs).index_select(0, packed_layout.slots).unsqueeze(0), None


def packed_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                            value: torch.Tensor, attention_mask: torch.Tensor | None,
                            dropout: float = 0.0, scaling: float | None = None,
                            packed_layout: PackedLayout | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """torch's varlen flash kernel on the packed sequence (CUDA, bf16/fp16). It has no dropout:
    attention-probability dropout is off on this path."""
    if packed_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D)
    scale = {} if scaling is None or math.isclose(scaling, q.shape[-1] ** -0.5) else {"scale": scaling}
    cu, bound = packed_layout.cu_seqlens, packed_layout.max_length
    return varlen_attn(q, k, v, cu, cu, bound, bound, **scale).unsqueeze(0), None


def register_attention() -> None:
    """Make both functions selectable by name; padded input gets the stock SDPA mask."""
    for name, function in ((PACKED_SDPA, packed_sdpa_attention), (PACKED_VARLEN, packed_varlen_attention)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, sdpa_mask)


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


# --------------------------------------------------------------------------- set-up


def position_offset(encoder: torch.nn.Module) -> int:
    """Where a row's position ids start: RoBERTa-style embeddings count from padding_idx + 1."""
    padding_idx = getattr(encoder.embeddings, "padding_idx", None)
    return 0 if padding_idx is None else padding_idx + 1


def unsupported_reason(encoder: torch.nn.Module) -> str | None:
    """Why this encoder cannot run packed batches, or None when it can."""
    model_type = getattr(encoder.config, "model_type", "?")
    if model_type not in PACKABLE_MODEL_TYPES:
        return f"model type {model_type} has no packed path here (only {', '.join(PACKABLE_MODEL_TYPES)})"
    try:
        apart = rows_stay_apart(encoder)
    except Exception as exc:  # an API this transformers version lacks
        return f"packed attention could not run here ({type(exc).__name__}: {str(exc)[:120]})"
    if not apart:
        return "the packed forward pass of this transformers version does not match row by row"
    return None


def use_packed_attention(encoder: torch.nn.Module, varlen: bool) -> None:
    register_attention()
    encoder.set_attn_implementation(PACKED_VARLEN if varlen else PACKED_SDPA)


@torch.no_grad()
def rows_stay_apart(encoder: torch.nn.Module) -> bool:
    """Two short rows packed together give each row's own first-token output (checked once per
    run, in fp32 on the CPU-side copy): guards against a transformers version whose encoder does
    not pass ``packed_layout`` or ``position_ids`` through."""
    before, was_training = encoder.config._attn_implementation, encoder.training
    encoder.eval()
    vocab = encoder.config.vocab_size
    rows = [[i % vocab for i in (101, 2023, 2003, 102)], [i % vocab for i in (101, 7592, 102)]]
    device = next(encoder.parameters()).device
    alone = torch.cat([encoder(input_ids=torch.tensor([r], device=device)).last_hidden_state[0, :1]
                       for r in rows])
    try:
        use_packed_attention(encoder, varlen=False)
        collate = PackedCollator(encoder.config.pad_token_id or 0, position_offset(encoder), 8, False)
        batch = collate([{"input_ids": r, "label": 0.0, "task_id": 0} for r in rows])
        layout = batch["packed_layout"].to(device)
        out = encoder(input_ids=batch["input_ids"].to(device), position_ids=batch["position_ids"].to(device),
                      packed_layout=layout).last_hidden_state[0, layout.first_token]
        return torch.allclose(out, alone, rtol=1e-3, atol=1e-4)
    finally:
        encoder.set_attn_implementation(before)
        encoder.train(was_training)


def batch_collator(config, model: torch.nn.Module, tokenizer,
                   pad_to_multiple_of: int | None) -> tuple[Callable, str | None]:
    """The packed collator (the encoder switched to packed attention) when ``config.packing`` and
    the encoder allows it, else the padded one with a one-line notice saying why."""
    padded = make_collator(tokenizer, pad_to_multiple_of)
    if not config.packing:
        return padded, None
    reason = unsupported_reason(model.encoder)
    if reason:
        return padded, f"Packing is off: {reason}; batches are padded."
    use_packed_attention(model.encoder, config.varlen_attention)
    model.budgeted_shapes = config.compile_model
    return PackedCollator(tokenizer.pad_token_id or 0, position_offset(model.encoder),
                          config.max_seq_length, budgeted=config.compile_model), None


def check_packing_options(config, device: torch.device, mixed_precision: str) -> None:
    """--varlen-attention needs packed batches, a CUDA GPU and bf16/fp16 (the kernel's inputs)."""
    if not config.varlen_attention:
        return
    if not config.packing:
        raise MtlvsiftError("--varlen-attention runs on packed batches: drop --no-packing.")
    if device.type != "cuda" or mixed_precision not in ("bf16", "fp16"):
        raise MtlvsiftError(
            f"--varlen-attention needs a CUDA GPU and bf16 or fp16 mixed precision (here: "
            f"{device.type}, mixed precision {mixed_precision}). Launch with a GPU config such as "
            f"launch_configs/gpu_bf16.yaml, or leave the option out (packed SDPA attention).")
