"""Packed batches: the layout, equivalence with padded batches (outputs, gradients, a whole run)
for each packed family (tiny random BERT, RoBERTa, ELECTRA, ModernBERT, DeBERTa-v3 encoders built
from their configs), the fallback to padding, and the number of compiled graphs under --compile."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import mtlvsift.train.batches.packing as packing
import mtlvsift.train.model.encoders as encoders
import mtlvsift.train.model.packed_attention as packed_attention
from helpers import model_dir, read_log, run_script, tiny_args
from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.batches.padding import make_collator
from mtlvsift.train.model.multitask import MultiTaskModel
from mtlvsift.train.batches.packing import PackedCollator, token_budget


def rows_of(lengths, vocab=30522, types=False, seed=0):
    """Features as the tokenized datasets hold them: unpadded token lists, a label, a task."""
    rng = random.Random(seed)
    features = []
    for i, n in enumerate(lengths):
        feature = {"input_ids": [101] + [rng.randrange(1000, vocab) for _ in range(n - 2)] + [102],
                   "attention_mask": [1] * n, "label": float(i % 2), "task_id": i % 2}
        if types:
            feature["token_type_ids"] = [0] * (n // 2) + [1] * (n - n // 2)
        features.append(feature)
    return features


def test_collator_lays_rows_end_to_end():
    features = rows_of([3, 20, 5], types=True)
    batch = PackedCollator(pad_token_id=0, position_offset=2, max_length=128, budgeted=False)(features)
    layout = batch["packed_layout"]
    assert batch["input_ids"][0].tolist() == sum((f["input_ids"] for f in features), [])
    assert batch["position_ids"][0].tolist() == [2, 3, 4] + list(range(2, 22)) + list(range(2, 7))
    assert batch["token_type_ids"][0].tolist() == sum((f["token_type_ids"] for f in features), [])
    assert layout.first_token.tolist() == [0, 3, 23] and layout.cu_seqlens.tolist() == [0, 3, 23, 28]
    assert layout.max_length == 20 and batch["labels"].tolist() == [0.0, 1.0, 0.0]
    # Rows of 3 and 5 tokens share the block of rows up to 16 tokens; the 20-token row has its own.
    short, long_ = layout.blocks
    assert short.tolist() == [[0, 1, 2, 0, 0], [23, 24, 25, 26, 27]]
    assert layout.inside[0].tolist() == [[True] * 3 + [False] * 2, [True] * 5]  # the key mask
    assert long_.tolist() == [list(range(3, 23))] and layout.inside[1].all()
    flat = torch.cat([short.flatten(), long_.flatten()])
    assert torch.equal(flat[layout.slots], torch.arange(28))  # each token's place holds it


def test_budgets_round_up_and_fill_with_pieces():
    assert [token_budget(n) for n in (1, 64, 65, 128, 129, 1000, 2048, 2049)] == \
        [64, 64, 128, 128, 192, 1024, 2048, 2496]
    assert all(n <= token_budget(n) <= 1.2 * n + 64 for n in range(1, 5000, 7))
    budgets = {token_budget(n) for n in range(2000, 2800)}
    assert len(budgets) == 3  # a run whose batches vary by +-15% sees few shapes
    batch = PackedCollator(0, 0, max_length=16, budgeted=True)(rows_of([10, 12, 14, 9]))
    layout = batch["packed_layout"]
    assert batch["input_ids"].shape == (1, 64) and batch["input_ids"][0, 45:].eq(0).all()
    assert layout.cu_seqlens.tolist() == [0, 10, 22, 36, 45, 61, 64]  # filler cut at max_length
    assert len(layout.blocks) == 1 and layout.blocks[0].shape == (4, 14)
    assert layout.slots[45:].eq(4 * 14).all()  # the filler's place: after the block


SHAPE = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=160)


def tiny_config(kind, pad=0):
    """A tiny random encoder's config of each packed family, dropout off."""
    import transformers as tf

    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if kind == "bert":
        return tf.BertConfig(**SHAPE, **no_dropout)
    if kind == "roberta":
        return tf.RobertaConfig(**SHAPE, **no_dropout, pad_token_id=pad, type_vocab_size=1)
    if kind == "electra":  # embeddings narrower than the layers: the projection is exercised
        return tf.ElectraConfig(**SHAPE, **no_dropout, embedding_size=16)
    if kind == "modernbert":  # layers 1 and 2 local, window 8 (4 each side): rows longer than it
        return tf.ModernBertConfig(**{**SHAPE, "num_hidden_layers": 3}, local_attention=8,
                                   global_attn_every_n_layers=3, attention_dropout=0.0,
                                   embedding_dropout=0.0, mlp_dropout=0.0, pad_token_id=pad,
                                   bos_token_id=101, cls_token_id=101, eos_token_id=102,
                                   sep_token_id=102, hidden_dropout_prob=0.0)  # the heads' dropout
    # DeBERTa-v3's shape: relative attention both ways, log buckets (rows longer than 16), no
    # absolute positions, no token types
    return tf.DebertaV2Config(**SHAPE, **no_dropout, relative_attention=True, position_buckets=16,
                              pos_att_type=["p2c", "c2p"], position_biased_input=False,
                              share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0,
                              pad_token_id=pad)


def tiny_encoder(kind, tokenizer_path):
    from transformers import AutoModel, AutoTokenizer

    config = tiny_config(kind, AutoTokenizer.from_pretrained(tokenizer_path).pad_token_id)
    torch.manual_seed(0)
    extra = {"add_pooling_layer": False} if kind in ("bert", "roberta") else {}
    return AutoModel.from_config(config, **extra)


PACKED_KINDS = ["bert", "roberta", "electra", "modernbert", "deberta"]


@pytest.mark.parametrize("kind", PACKED_KINDS)
def test_packed_equals_padded_logits_and_gradients(kind, minilm_path):
    """The same batch, padded and packed: logits and every parameter's gradient (fp32, no
    dropout) agree to 1e-4 relative."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = MultiTaskModel(tiny_encoder(kind, minilm_path), ["rte", "stsb"], [2, 1])
    features = rows_of([7, 40, 3, 18, 64, 12, 2, 33], types=kind in ("bert", "electra", "modernbert"))
    if kind == "roberta":
        features = [{k: v for k, v in f.items() if k != "token_type_ids"} for f in features]
    padded = make_collator(tokenizer, None)(features)
    assert encoders.unsupported_reason(model.encoder) is None
    collate, notice = encoders.batch_collator(_Options(), model, tokenizer, None)
    assert notice is None and isinstance(collate, PackedCollator)
    packed = collate(features)
    results = []
    for batch in (padded, packed):
        model.zero_grad()
        loss, _ = model(**batch)
        loss.backward()
        logits = [model(**{**batch, "labels": None, "task_ids": batch["task_ids"] * 0 + t}) for t in (0, 1)]
        results.append((torch.cat(logits, 1), {n: p.grad.clone() for n, p in model.named_parameters()
                                                if p.grad is not None}))
    (logits_a, grads_a), (logits_b, grads_b) = results
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-4, atol=1e-6)
    scale = torch.cat([g.flatten() for g in grads_a.values()]).norm()
    assert len(grads_a) == len(grads_b) == sum(1 for _ in model.parameters())
    for name, grad in grads_a.items():
        # Key biases get a gradient of exactly zero in exact arithmetic (softmax ignores a
        # constant per query): both sides are rounding noise, ~1e-16 of the whole gradient.
        error = (grads_b[name] - grad).norm()
        assert error <= 1e-4 * grad.norm() + 1e-7 * scale, (name, error, grad.norm())


class _Options:
    packing, varlen_attention, compile_model, max_seq_length = True, False, False, 128


def test_a_leaking_attention_is_caught(minilm_path, monkeypatch):
    """If the packed layout never reached attention (stock SDPA over the packed row), rows would
    see each other: the start-up check notices and the run falls back to padding."""
    encoder = tiny_encoder("bert", minilm_path)
    assert encoders.rows_stay_apart(encoder)
    def stock_sdpa_over_the_row(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                                packed_layout=None, **kwargs):
        # No mask at all: newer transformers turn packed position ids into a block mask upstream.
        return packed_attention.sdpa_attention_forward(module, query, key, value, None,
                                                       dropout=dropout, scaling=scaling)

    monkeypatch.setattr(packed_attention, "packed_sdpa_attention", stock_sdpa_over_the_row)
    assert not encoders.rows_stay_apart(encoder)
    assert "does not match row by row" in encoders.unsupported_reason(encoder)


def test_packed_attention_refuses_what_it_does_not_implement(minilm_path, monkeypatch):
    """A soft cap, a causal flag or any other attention feature with a value is refused, never
    ignored; the encoder then falls back to padding with the reason. A sliding window is
    implemented: a band inside each row (flash's meaning: keys less than the window away)."""
    collate = PackedCollator(0, 0, 16, False)
    batch = collate(rows_of([5, 3]))
    q = torch.randn(1, 2, batch["input_ids"].shape[1], 4)
    layout = batch["packed_layout"]
    out, _ = packed_attention.packed_sdpa_attention(None, q, q, q, None, packed_layout=layout,
                                                    position_ids=batch["position_ids"], sliding_window=None)
    assert out.shape == (1, q.shape[2], 2, 4)
    windowed, _ = packed_attention.packed_sdpa_attention(None, q, q, q, None, packed_layout=layout, sliding_window=2)
    first = q[:, :, :5]
    band = (torch.arange(5)[:, None] - torch.arange(5)[None, :]).abs() < 2
    alone = torch.nn.functional.scaled_dot_product_attention(first, first, first, attn_mask=band)
    torch.testing.assert_close(windowed[0, :5], alone[0].transpose(0, 1))
    assert not torch.allclose(windowed[0, :5], out[0, :5])
    with pytest.raises(packed_attention.UnsupportedAttentionArgument, match="softcap=30.0"):
        packed_attention.packed_sdpa_attention(None, q, q, q, None, packed_layout=layout, softcap=30.0)
    with pytest.raises(packed_attention.UnsupportedAttentionArgument, match="is_causal"):
        packed_attention.packed_sdpa_attention(None, q, q, q, None, packed_layout=layout, is_causal=True)

    encoder = tiny_encoder("bert", minilm_path)
    stock = packed_attention.packed_sdpa_attention
    monkeypatch.setattr(packed_attention, "packed_sdpa_attention",
                        lambda *a, **k: stock(*a, **k, softcap=50.0))  # as such an encoder would
    assert "softcap=50.0" in encoders.unsupported_reason(encoder)


def tiny_encoder_folder(kind, folder, tokenizer_path):
    """tiny_encoder(kind) saved with the MiniLM tokenizer, as --model reads it."""
    from transformers import AutoTokenizer

    tiny_encoder(kind, tokenizer_path).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["bert", pytest.param("electra", marks=pytest.mark.slow), "modernbert",
                                  "deberta"])
def test_heterogeneous_run_losses_match_padded(kind, tiny_model_no_dropout, minilm_path, tiny_glue, tmp_path):
    """Two tasks, heterogeneous batches, 24 steps: every logged loss agrees to 1e-4 relative
    (ModernBERT: RTE rows longer than its local window of 8)."""
    model = tiny_model_no_dropout if kind == "bert" else \
        tiny_encoder_folder(kind, tmp_path / kind, minilm_path)
    logs = {}
    for name, extra in (("padded", ["--no-packing"]), ("packed", [])):
        result = run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size",
                                          "--log-every", 1, *extra,
                                          *tiny_args(model, tiny_glue, tmp_path / name)])
        assert "Packing is off" not in result.output
        logs[name] = read_log(model_dir(tmp_path / name, model) / "mtl" / "rte--sst2__sampling-size" / "seed-0")
    assert len(logs["packed"]) == len(logs["padded"]) == 24
    np.testing.assert_allclose([e["loss"] for e in logs["packed"]], [e["loss"] for e in logs["padded"]],
                               rtol=1e-4)


def test_deberta_packing_refuses_its_convolution_and_compile(minilm_path):
    """DeBERTa-v2's convolution layer mixes neighbouring tokens, rows included: padded, with the
    reason; so is DeBERTa under --compile (its packed path bypasses the compiled forward)."""
    from transformers import DebertaV2Model

    encoder = tiny_encoder("deberta", minilm_path)
    assert encoders.unsupported_reason(encoder) is None
    assert "--compile" in encoders.unsupported_reason(encoder, compiled=True)
    config = tiny_config("deberta")
    config.conv_kernel_size = 3
    assert "convolution" in encoders.unsupported_reason(DebertaV2Model(config))
    options = _Options()
    options.varlen_attention = True  # the kernel of the attention interface, which DeBERTa does not use
    model = MultiTaskModel(encoder, ["rte"], [2])
    with pytest.raises(MtlvsiftError, match="--varlen-attention .* deberta-v2 computes its own attention"):
        encoders.batch_collator(options, model, None, None)


def test_other_architectures_fall_back_to_padding(minilm_path, tiny_glue, tmp_path):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    folder = tmp_path / "distilbert"
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    result = run_script("train_stilts", ["--target", "rte", *tiny_args(folder, tiny_glue, tmp_path, epochs=1)])
    assert "Packing is off: model type distilbert has no packed path here" in " ".join(result.output.split())
    record = json.loads((model_dir(tmp_path, folder) / "single" / "rte" / "seed-0" / "result.json").read_text())
    assert record["config"]["packing"] is True and len(record["history"]) == 2


@pytest.mark.slow
def test_compile_makes_one_graph_per_budget(tiny_model_no_dropout, minilm_path):
    """30 training steps of varied lengths through the compiled encoder: no more graphs than the
    budgets their packed lengths fall into."""
    from torch._dynamo.utils import counters
    from transformers import AutoTokenizer

    from mtlvsift.train.model.pretrained import load_encoder

    torch._dynamo.reset()
    counters.clear()
    model = MultiTaskModel(load_encoder(str(tiny_model_no_dropout)), ["rte", "sst2"], [2, 2])
    options = _Options()
    options.compile_model = True
    collate, _ = encoders.batch_collator(options, model, AutoTokenizer.from_pretrained(minilm_path), None)
    model.encoder.compile(dynamic=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = random.Random(0)
    budgets, lengths = set(), set()
    for step in range(30):
        sizes = [rng.randint(3, 40) for _ in range(rng.randint(6, 10))]
        batch = collate(rows_of(sizes, seed=step))
        budgets.add(batch["input_ids"].shape[1])
        lengths.add(sum(sizes))
        loss, _ = model(**batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert len(lengths) > 20 and 1 < len(budgets) <= 4
    assert counters["stats"]["unique_graphs"] <= len(budgets), (dict(counters["stats"]), budgets)
