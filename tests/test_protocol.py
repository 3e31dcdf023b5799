"""The two protocols' exact numbers: the original's quotas and epochs (issue 10's figures with the
full GLUE sizes), the standard epoch's row totals, the loss of each protocol, heads shared by
label count, lower-casing. The runs themselves: test_protocol_runs.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import AUTHORS_TASK_ORDER, GLUE_TASK_NAMES
from mtlvsift.train.model.multitask import MultiTaskModel, head_of_task, loss_weights, reuse_heads
from mtlvsift.train.model.pretrained import lowercase_tokenizer
from mtlvsift.train.batches.probabilities import size_probabilities, uniform_probabilities
from mtlvsift.train.batches.sampling import epoch_layout, epoch_schedule, original_quotas, schedule_counts

# MNLI, QQP, QNLI, SST-2, CoLA, STS-B, MRPC, RTE, WNLI (the project's order, by size).
GLUE_SIZES = (392702, 363846, 104743, 67349, 8551, 5749, 3668, 2490, 635)
AUTHORS_ORDER = [GLUE_TASK_NAMES.index(t) for t in AUTHORS_TASK_ORDER]  # CoLA first
RTE_MNLI = (2490, 392702)


# --------------------------------------------------------------------------- original quotas


@pytest.mark.parametrize("p, batch_size, top_up, expected", [
    # The authors' own unit tests (tests/transferprediction/test_dataset_sampling.py).
    ((0.4, 0.3, 0.2, 0.1), 16, True, [6, 5, 3, 2]),   # 6.4, 4.8, 3.2, 1.6 -> 16 already
    ((0.4, 0.3, 0.2, 0.1), 20, True, [8, 6, 4, 2]),
    ((0.4, 0.3, 0.2, 0.1), 4, True, [1, 1, 1, 1]),    # B = K: one row each
    ((0.25,) * 4, 64, False, [16, 16, 16, 16]),
    # softmax(0.3 - 0.1, 0.75 - 0.5): 31.2, 32.8 (their dynamic test)
    (tuple(np.exp([0.2, 0.25]) / np.exp([0.2, 0.25]).sum()), 64, True, [31, 33]),
    # Half to even, like Python's round: 2.5 -> 2, 1.5 -> 2.
    ((0.625, 0.375), 4, True, [2, 2]),
    # 3.5, 3.5, 3 -> 4, 4, 3 = 11: the first task gives the extra row back (equal p, unequal k).
    ((0.35, 0.35, 0.3), 10, True, [3, 4, 3]),
    # 0.3, 1.5, 2.2 -> 0, 2, 2 = 4; task 0 at 0 takes a row from the first largest (task 1).
    ((0.075, 0.375, 0.55), 4, True, [1, 1, 2]),
    ((1 / 9,) * 9, 128, False, [14] * 9),            # uniform: no top-up, 126 rows
    ((1 / 9,) * 9, 128, True, [16] + [14] * 8),      # the same p as dynamic/size: topped up
])
def test_original_quotas_hand_computed(p, batch_size, top_up, expected):
    assert original_quotas(p, batch_size, top_up).tolist() == expected


def test_original_quotas_follow_the_authors_task_order():
    p = size_probabilities(GLUE_SIZES)
    # Rounded: 53, 49, 14, 9, 1, 1, 0, 0, 0 = 127. With MNLI first (the order the issue assumed):
    # MNLI takes the missing row, then gives one to each of MRPC, RTE and WNLI.
    assert original_quotas(p, 128).tolist() == [51, 49, 14, 9, 1, 1, 1, 1, 1]
    # The authors' MTL_All listed CoLA first: CoLA takes the missing row (2), MNLI gives 3 (50).
    assert original_quotas(p, 128, order=AUTHORS_ORDER).tolist() == [50, 49, 14, 9, 2, 1, 1, 1, 1]
    with pytest.raises(MtlvsiftError, match="at least one row per task"):
        original_quotas(p, 8)


def test_original_mtl_all_size_epochs():
    layout = epoch_layout(GLUE_SIZES, size_probabilities(GLUE_SIZES), 128, protocol="original",
                          sampling="size", order=AUTHORS_ORDER)
    assert layout.quotas.tolist() == [50, 49, 14, 9, 2, 1, 1, 1, 1]
    assert len(layout.batch_sizes) == 635  # WNLI runs out first: 635 // 1
    assert 10 * len(layout.batch_sizes) == 6350
    assert layout.rows.tolist() == [635 * k for k in layout.quotas]
    assert set(layout.batch_sizes) == {128}
    # The order gives the same epoch (only MNLI's and CoLA's quotas move).
    layout = epoch_layout(GLUE_SIZES, size_probabilities(GLUE_SIZES), 128, protocol="original",
                          sampling="size")
    assert layout.quotas.tolist() == [51, 49, 14, 9, 1, 1, 1, 1, 1] and len(layout.batch_sizes) == 635


def test_original_mtl_all_uniform_epochs():
    layout = epoch_layout(GLUE_SIZES, uniform_probabilities(GLUE_SIZES), 128, protocol="original",
                          sampling="uniform", order=AUTHORS_ORDER)
    assert layout.quotas.tolist() == [14] * 9 and layout.quotas.sum() == 126
    # 635 // 14 = 45 rounds of 126 rows = 5,670 rows, in batches of 128: 44 full and one of 38.
    assert len(layout.batch_sizes) == 45 and 10 * 45 == 450
    assert layout.batch_sizes[-1] == 38 and sum(layout.batch_sizes) == 45 * 126


def test_original_rte_mnli_epochs():
    first = epoch_layout(RTE_MNLI, size_probabilities(RTE_MNLI), 128, protocol="original",
                         sampling="dynamic")
    assert first.quotas.tolist() == [1, 127] and len(first.batch_sizes) == 2490
    later = epoch_layout(RTE_MNLI, [0.5075, 0.4925], 128, protocol="original", sampling="dynamic")
    assert later.quotas.tolist() == [65, 63] and len(later.batch_sizes) == 38  # 2490 // 65
    # The standard protocol: the same 3,088 batches (all the rows) in every epoch.
    for p in (size_probabilities(RTE_MNLI), [0.5075, 0.4925]):
        assert len(epoch_layout(RTE_MNLI, p, 128).batch_sizes) == 3088


def test_original_single_task_drops_the_last_batch():
    layout = epoch_layout((2490,), [1.0], 128, protocol="original")
    assert layout.quotas.tolist() == [128] and len(layout.batch_sizes) == 19  # 2,432 of 2,490 rows
    assert len(epoch_layout((2490,), [1.0], 128).batch_sizes) == 20  # standard: ceil
    with pytest.raises(MtlvsiftError, match="not one batch"):
        epoch_layout((100,), [1.0], 128, protocol="original")


def test_original_schedule_pools_the_epoch_and_shuffles_it_whole():
    sizes, p = (40, 100), [0.3, 0.7]  # quotas 2 (2.4), 6 (5.6 -> 6): min(20, 16) = 16 batches
    schedule = epoch_schedule(sizes, p, 8, seed=0, epoch=0, protocol="original", sampling="size")
    assert [len(b) for b in schedule] == [8] * 16
    assert schedule_counts(schedule, 2).tolist() == [32, 96]
    per_batch = [schedule_counts([b], 2)[0] for b in schedule]
    assert len(set(per_batch)) > 1  # the pool is shuffled as a whole: k_i rows only on average
    for task, n in enumerate(sizes):  # within one pass: no example twice
        rows = np.concatenate(schedule)
        examples = rows[rows[:, 0] == task, 1]
        assert len(set(examples.tolist())) == len(examples) and examples.max() < n
    homogeneous = epoch_schedule(sizes, p, 8, seed=0, epoch=0, batching="homogeneous",
                                 protocol="original", sampling="size")
    assert [len(b) for b in homogeneous] == [8] * 16  # 32 // 8 + 96 // 8 full batches
    assert all(len(set(b[:, 0].tolist())) == 1 for b in homogeneous)
    assert schedule_counts(homogeneous, 2).tolist() == [32, 96]


# --------------------------------------------------------------------------- standard epochs


@pytest.mark.parametrize("sampling", ["uniform", "size"])
def test_standard_epoch_rows_follow_p_for_the_nine_glue_tasks(sampling):
    p = uniform_probabilities(GLUE_SIZES) if sampling == "uniform" else size_probabilities(GLUE_SIZES)
    schedule = epoch_schedule(GLUE_SIZES, p, 128, seed=0, epoch=0)
    rows = sum(GLUE_SIZES)
    assert len(schedule) == 7420
    counts = schedule_counts(schedule, 9)
    assert np.all(np.abs(counts - p * rows) < 1)  # round(p_i x epoch rows) within one row
    if sampling == "uniform":  # 949,733 / 9 = 105,525.9: no task favoured by the batch rounding
        assert counts.tolist() == [105526] * 8 + [105525]
    else:  # WNLI: one pass (635 rows), not a row in each of the 7,420 batches
        assert counts.tolist() == list(GLUE_SIZES)
        wnli = [schedule_counts([b], 9)[8] for b in schedule]
        assert sum(wnli) == 635 and max(wnli) == 1


# --------------------------------------------------------------------------- loss and heads


def test_loss_weights_by_protocol():
    assert loss_weights([3, 1]) == [0.25, 0.25]
    assert loss_weights([3, 1], per_task_mean=True) == [1 / 3, 1.0]
    assert loss_weights([3, 0], per_task_mean=True) == [1 / 3, 0.0]  # an absent task weighs 0
    assert loss_weights([3, 1], num_processes=2, per_task_mean=True) == [2 / 3, 2.0]


def _tiny_encoder():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertModel(config)


def test_a_mixed_batch_objective_by_hand():
    """3 rows of task A (binary), 1 of task B (binary): the original's sum of the two task
    means, and the standard mean over the 4 rows."""
    model = MultiTaskModel(_tiny_encoder(), ["a", "b"], [2, 2]).eval()
    inputs = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0], [1, 8, 9, 2], [1, 4, 2, 0]])
    mask = (inputs != 0).long()
    task_ids, labels = torch.tensor([0, 0, 0, 1]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    _, task_losses = model(inputs, mask, task_ids, labels)
    first = model.encode(inputs, mask)
    ce = torch.nn.functional.cross_entropy
    mean_a = ce(model.heads[0](first[:3]), labels[:3].long())
    mean_b = ce(model.heads[1](first[3:]), labels[3:].long())
    everything = torch.cat([ce(model.heads[0](first[:3]), labels[:3].long(), reduction="none"),
                            ce(model.heads[1](first[3:]), labels[3:].long(), reduction="none")])
    original = (task_losses * torch.tensor(loss_weights([3, 1], per_task_mean=True))).sum()
    standard = (task_losses * torch.tensor(loss_weights([3, 1]))).sum()
    assert original.item() == pytest.approx((mean_a + mean_b).item(), rel=1e-6)
    assert standard.item() == pytest.approx(everything.mean().item(), rel=1e-6)
    assert abs(original.item() - standard.item()) > 1e-3


def test_heads_shared_by_label_count(tmp_path):
    assert head_of_task([2, 3, 2, 1, 2]) == [0, 1, 2, 3, 4]
    assert head_of_task([2, 3, 2, 1, 2], share_by_label_count=True) == [0, 1, 0, 2, 0]
    model = MultiTaskModel(_tiny_encoder(), ["rte", "mnli", "qnli"], [2, 3, 2], share_heads=True)
    assert len(model.heads) == 2 and [h.out_proj.out_features for h in model.heads] == [2, 3]
    inputs = torch.tensor([[1, 5, 2], [1, 6, 2]])
    rte = model(inputs, torch.ones_like(inputs), torch.tensor([0, 0]))
    qnli = model(inputs, torch.ones_like(inputs), torch.tensor([2, 2]))
    assert torch.equal(rte, qnli)  # one classifier for RTE and QNLI, as in the original


def test_original_stilts_reuses_the_supporting_head_of_the_same_label_count(tmp_path, minilm_path):
    from transformers import AutoTokenizer

    support = MultiTaskModel(_tiny_encoder(), ["sst2"], [2], share_heads=True)
    support.save(tmp_path / "sst2", AutoTokenizer.from_pretrained(minilm_path))
    for target, labels, reused in (("rte", 2, ["rte"]), ("stsb", 1, [])):
        model = MultiTaskModel(_tiny_encoder(), [target], [labels], share_heads=True)
        before = {k: v.clone() for k, v in model.heads.state_dict().items()}
        assert reuse_heads(model, tmp_path / "sst2") == reused
        for key, value in model.heads.state_dict().items():
            source = support.heads.state_dict()[key] if reused else before[key]
            assert torch.equal(value, source), key


def test_lowercase_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"Hello": 0, "hello": 1, "[UNK]": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert tokenizer("Hello hello")["input_ids"] == [0, 1]
    lowercase_tokenizer(tokenizer)
    assert tokenizer("Hello hello")["input_ids"] == [1, 1]
    spec = tokenizer.backend_tokenizer.to_str()
    lowercase_tokenizer(tokenizer)  # idempotent: the tokenization cache key stays the same
    assert tokenizer.backend_tokenizer.to_str() == spec
