"""The encoder contract: what the project needs of an architecture, one family at a time.

A family (``EncoderFamily``) names the transformers model types it covers and says, for them:
- whether the checkpoint's pooler is left out when the encoder is loaded (``has_pooler``: BERT
  and RoBERTa carry one that no head reads, and DDP would find its parameters unused);
- where a row's position ids start (``positions_after_padding``: RoBERTa counts from
  padding_idx + 1, which also shortens the longest row it can read);
- whether it reads token type ids (``token_types``: ModernBERT has none, whatever its tokenizer
  gives);
- whether its rows can be packed (``packed``): laid end to end in one sequence with per-row
  position ids, and how attention stays inside each row (``packed_forward``): by default every
  attention layer goes through transformers' attention interface with nothing but what
  ``packed_attention`` implements (BERT, RoBERTa, ELECTRA; ModernBERT with its local window as a
  band inside each row); DeBERTa's disentangled attention runs on the layout's blocks instead.

An encoder of a model type no family covers, or whose packed forward pass does not give each
row what it gives that row alone (``rows_stay_apart``, checked once per run), is padded, with
one line saying why (``batch_collator``). Adding an architecture: one ``EncoderFamily`` here,
and a packed-against-padded test in tests/test_packing.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.batches.packing import PackedCollator, PackedLayout
from mtlvsift.train.batches.padding import make_collator
from mtlvsift.train.model.packed_attention import (PACKED_SDPA, PACKED_VARLEN, deberta_packed_forward,
                                                   register_attention)


def interface_packed_forward(encoder: torch.nn.Module, input_ids: torch.Tensor, layout: PackedLayout,
                             **extra) -> torch.Tensor:
    """The encoder's own forward; its attention layers get the layout through the interface."""
    return encoder(input_ids=input_ids, packed_layout=layout, **extra).last_hidden_state


def modernbert_packed_forward(encoder: torch.nn.Module, input_ids: torch.Tensor, layout: PackedLayout,
                              **extra) -> torch.Tensor:
    """ModernBERT's forward with no masks: attention keeps to each row (and its local window
    inside the row) from the layout; a (T, T) sliding-window mask would be built otherwise."""
    masks = {"full_attention": None, "sliding_attention": None}
    return encoder(input_ids=input_ids, attention_mask=masks, packed_layout=layout, **extra).last_hidden_state


@dataclass(frozen=True)
class EncoderFamily:
    name: str
    model_types: tuple[str, ...]  # transformers' config.model_type values it covers
    has_pooler: bool = False  # loaded with add_pooling_layer=False
    positions_after_padding: bool = False  # position ids start at padding_idx + 1
    token_types: bool = True  # reads token_type_ids
    packed: bool = False  # rows may be packed (attention stays in each row through packed_forward)
    packed_forward: Callable = interface_packed_forward  # (encoder, input_ids, layout, **extra) -> (1, T, H)
    attention_interface: bool = True  # its attention is chosen by set_attn_implementation


FAMILIES = (
    EncoderFamily("bert", ("bert",), has_pooler=True, packed=True),
    EncoderFamily("roberta", ("roberta", "xlm-roberta", "camembert"), has_pooler=True,
                  positions_after_padding=True, packed=True),
    EncoderFamily("electra", ("electra",), packed=True),  # BERT-shaped, no pooler
    EncoderFamily("modernbert", ("modernbert",), token_types=False, packed=True,
                  packed_forward=modernbert_packed_forward),
    EncoderFamily("deberta-v2", ("deberta-v2",), packed=True, packed_forward=deberta_packed_forward,
                  attention_interface=False),
)
PACKABLE_MODEL_TYPES = tuple(t for f in FAMILIES if f.packed for t in f.model_types)


def family_of(model_type: str | None) -> EncoderFamily | None:
    """The family that covers a transformers model type, or None (then: padded batches)."""
    return next((f for f in FAMILIES if model_type in f.model_types), None)


def position_offset(encoder: torch.nn.Module) -> int:
    """Where a row's position ids start: RoBERTa-style embeddings count from padding_idx + 1."""
    family = family_of(getattr(encoder.config, "model_type", None))
    if family is None or not family.positions_after_padding:
        return 0
    return encoder.embeddings.padding_idx + 1


def packed_hidden_states(encoder: torch.nn.Module, input_ids: torch.Tensor, layout: PackedLayout,
                         **extra) -> torch.Tensor:
    """The (1, T, H) last hidden states of a packed sequence, by the encoder family's own path."""
    return family_of(encoder.config.model_type).packed_forward(encoder, input_ids, layout, **extra)


def model_inputs(encoder: torch.nn.Module, **inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The given inputs the encoder reads: token type ids dropped for a family without them."""
    family = family_of(getattr(encoder.config, "model_type", None))
    dropped = () if family is None or family.token_types else ("token_type_ids",)
    return {k: v for k, v in inputs.items() if v is not None and k not in dropped}


def unsupported_reason(encoder: torch.nn.Module, compiled: bool = False) -> str | None:
    """Why this encoder cannot run packed batches, or None when it can."""
    model_type = getattr(encoder.config, "model_type", "?")
    family = family_of(model_type)
    if family is None or not family.packed:
        return f"model type {model_type} has no packed path here (only {', '.join(PACKABLE_MODEL_TYPES)})"
    if not family.attention_interface:  # DeBERTa-v2/v3
        if getattr(encoder.encoder, "conv", None) is not None:
            return "DeBERTa's convolution layer (conv_kernel_size > 0) would mix neighbouring rows"
        if compiled:
            return "--compile compiles the encoder's forward, which DeBERTa's packed path does not call"
    try:
        apart = rows_stay_apart(encoder)
    except Exception as exc:  # an API this transformers version lacks
        return f"packed attention could not run here ({type(exc).__name__}: {str(exc)[:120]})"
    if not apart:
        return "the packed forward pass of this transformers version does not match row by row"
    return None


def use_packed_attention(encoder: torch.nn.Module, varlen: bool) -> None:
    if not family_of(encoder.config.model_type).attention_interface:
        return  # its packed_forward keeps attention inside each row
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
        out = packed_hidden_states(encoder, batch["input_ids"].to(device), layout,
                                   position_ids=batch["position_ids"].to(device))[0, layout.first_token]
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
    reason = unsupported_reason(model.encoder, compiled=config.compile_model)
    if reason:
        return padded, f"Packing is off: {reason}; batches are padded."
    if config.varlen_attention and not family_of(model.encoder.config.model_type).attention_interface:
        raise MtlvsiftError(f"--varlen-attention runs the attention interface's kernel, and "
                            f"{model.encoder.config.model_type} computes its own attention: leave it out.")
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
