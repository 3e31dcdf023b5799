"""Attention inside each row of a packed sequence, registered with transformers' attention
interface (``PACKED_SDPA``, ``PACKED_VARLEN``).

Linear layers, layer norms and embeddings act on each token alone, so only attention must know
the rows. ``PACKED_SDPA`` gathers q/k/v into padded (rows, length) blocks, one block per length
group (``batches.packing.LENGTH_GROUPS``), runs SDPA with the key mask and the model's attention
dropout, and gathers each token's output back: attention pads a little, the expensive layers not
at all. ``PACKED_VARLEN`` runs torch's varlen kernel on the packed sequence instead (CUDA,
bf16/fp16); that kernel has no dropout, so attention-probability dropout is off there. Stock
sdpa/eager/flex attention with packed position ids would let rows attend to each other in an
encoder: never rely on them.

An argument these functions do not implement (a sliding window, a causal flag, a soft cap) is
refused, never ignored: an encoder that passes one is not packable here (``encoders.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from mtlvsift.train.batches.packing import PackedLayout

# Arguments an encoder may pass that packing already accounts for (position ids are laid out per
# row by the collator). Any other argument with a value (a sliding window, is_causal, a soft
# cap, cross-attention states) is a feature these functions do not implement: refused.
_ACCOUNTED_FOR = frozenset({"position_ids"})


class UnsupportedAttentionArgument(TypeError):
    """The encoder asked packed attention for something it does not implement."""


def refuse_unimplemented(arguments: dict) -> None:
    for name, value in arguments.items():
        if name not in _ACCOUNTED_FOR and value is not None and value is not False:
            raise UnsupportedAttentionArgument(
                f"packed attention does not implement {name}={str(value)[:40]}")


PACKED_SDPA = "mtlvsift_packed_sdpa"


PACKED_VARLEN = "mtlvsift_packed_varlen"


def packed_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                          value: torch.Tensor, attention_mask: torch.Tensor | None,
                          dropout: float = 0.0, scaling: float | None = None,
                          packed_layout: PackedLayout | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Attention inside each row of a packed (1, H, T, D) sequence, per padded block; padded
    input (no ``packed_layout``) takes the stock SDPA path."""
    if packed_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    refuse_unimplemented(kwargs)
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
    refuse_unimplemented(kwargs)
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
