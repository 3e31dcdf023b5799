"""Attention inside each row of a packed sequence, registered with transformers' attention
interface (``PACKED_SDPA``, ``PACKED_VARLEN``).

Linear layers, layer norms and embeddings act on each token alone, so only attention must know
the rows. ``PACKED_SDPA`` gathers q/k/v into padded (rows, length) blocks, one block per length
group (``batches.packing.LENGTH_GROUPS``), runs SDPA with the key mask and the model's attention
dropout, and gathers each token's output back: attention pads a little, the expensive layers not
at all. ``PACKED_VARLEN`` runs torch's varlen kernel on the packed sequence instead (CUDA,
bf16/fp16); that kernel has no dropout, so attention-probability dropout is off there. Stock
sdpa/eager/flex attention with packed position ids would let rows attend to each other in an
encoder: never rely on them. A sliding window (ModernBERT's local layers) is a band inside each
row, with flash attention's meaning of the argument: keys less than ``sliding_window`` away.

An argument these functions do not implement (a causal flag, a soft cap) is refused, never
ignored: an encoder that passes one is not packable here (``encoders.py``).

DeBERTa-v2/v3 computes its disentangled attention outside the attention interface:
``deberta_packed_forward`` runs its layers on the packed sequence and its own attention module on
the same blocks, so each row gets its own relative positions (differences within the row).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mtlvsift.train.batches.packing import PackedLayout

# Arguments an encoder may pass that packing already accounts for: position ids are laid out per
# row by the collator, the sliding window is a band inside each row, ``deterministic`` asks flash
# attention for a deterministic backward (SDPA blocks and the varlen kernel ignore it). Any other
# argument with a value (is_causal, a soft cap, cross-attention states) is refused.
_ACCOUNTED_FOR = frozenset({"position_ids", "sliding_window", "deterministic"})


class UnsupportedAttentionArgument(TypeError):
    """The encoder asked packed attention for something it does not implement."""


def refuse_unimplemented(arguments: dict) -> None:
    for name, value in arguments.items():
        if name not in _ACCOUNTED_FOR and value is not None and value is not False:
            raise UnsupportedAttentionArgument(
                f"packed attention does not implement {name}={str(value)[:40]}")


PACKED_SDPA = "mtlvsift_packed_sdpa"


PACKED_VARLEN = "mtlvsift_packed_varlen"


def blocks_of(tokens: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
    """(T, ...) packed tokens -> (rows, length, ...): the tokens in each place of a block."""
    # index_select, not x[places]: its backward (index_add) is about twice as fast on a CPU
    return tokens.index_select(0, places.flatten()).unflatten(0, places.shape)


def tokens_of(block_outputs: list[torch.Tensor], layout: PackedLayout) -> torch.Tensor:
    """Each block's (rows, length, ...) outputs -> (T, ...) in packed order (the filler: zeros)."""
    flat = [out.flatten(0, 1) for out in block_outputs]
    flat.append(flat[0].new_zeros(1, *flat[0].shape[1:]))  # the filler's output
    return torch.cat(flat).index_select(0, layout.slots)


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: torch.Tensor | None,
                          dropout: float = 0.0, scaling: float | None = None,
                          packed_layout: PackedLayout | None = None,
                          sliding_window: int | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Attention inside each row of a packed (1, H, T, D) sequence, per padded block (within
    ``sliding_window`` of the query where given); padded input (no ``packed_layout``) takes the
    stock SDPA path (its mask holds the window)."""
    if packed_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    refuse_unimplemented(kwargs)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D)
    outputs = []
    for places, inside in zip(packed_layout.blocks, packed_layout.inside):
        q_b, k_b, v_b = (blocks_of(x, places).transpose(1, 2) for x in (q, k, v))  # (rows, H, length, D)
        mask = inside[:, None, None, :]
        if sliding_window is not None:
            column = torch.arange(places.shape[1], device=places.device)
            mask = mask & ((column[:, None] - column[None, :]).abs() < sliding_window)
        out = F.scaled_dot_product_attention(q_b, k_b, v_b, attn_mask=mask, dropout_p=dropout, scale=scaling)
        outputs.append(out.transpose(1, 2))
    return tokens_of(outputs, packed_layout).unsqueeze(0), None


def packed_varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                            value: torch.Tensor, attention_mask: torch.Tensor | None,
                            dropout: float = 0.0, scaling: float | None = None,
                            packed_layout: PackedLayout | None = None,
                            sliding_window: int | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """torch's varlen flash kernel on the packed sequence (CUDA, bf16/fp16). It has no dropout:
    attention-probability dropout is off on this path."""
    if packed_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    refuse_unimplemented(kwargs)
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, D)
    scale = {} if scaling is None or math.isclose(scaling, q.shape[-1] ** -0.5) else {"scale": scaling}
    if sliding_window is not None:  # as transformers' flash path passes it
        scale["window_size"] = (sliding_window - 1, sliding_window - 1)
    cu, bound = packed_layout.cu_seqlens, packed_layout.max_length
    return varlen_attn(q, k, v, cu, cu, bound, bound, **scale).unsqueeze(0), None


def deberta_packed_forward(encoder: torch.nn.Module, input_ids: torch.Tensor, layout: PackedLayout,
                           token_type_ids: torch.Tensor | None = None,
                           position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """DebertaV2Model's forward over a packed (1, T) sequence: embeddings, dense layers and norms
    on the packed tokens, each layer's DisentangledSelfAttention on the layout's blocks (key mask
    per row; relative positions built for the block, so each row's are its own). Without the
    convolution layer (``encoders.unsupported_reason`` refuses it) and ``z_steps``."""
    hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
    relative_embeddings = encoder.encoder.get_rel_embedding()
    masks = [inside[:, None, None, :] for inside in layout.inside]
    for layer in encoder.encoder.layer:
        tokens = hidden[0]
        outputs = [layer.attention.self(blocks_of(tokens, places), mask, relative_pos=None,
                                        rel_embeddings=relative_embeddings)[0]
                   for places, mask in zip(layout.blocks, masks)]
        attended = layer.attention.output(tokens_of(outputs, layout).unsqueeze(0), hidden)
        hidden = layer.output(layer.intermediate(attended), attended)
    return hidden


def register_attention() -> None:
    """Make both functions selectable by name; padded input gets the stock SDPA mask."""
    for name, function in ((PACKED_SDPA, packed_sdpa_attention), (PACKED_VARLEN, packed_varlen_attention)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, sdpa_mask)
