"""How the benchmarks measure: useful FLOPs, real and padded tokens, steady rates, device sync.

Useful FLOPs count real (non-pad) tokens only: training 6 * N * tokens (forward 2N + backward 4N),
evaluation 2 * N * tokens, N = the encoder's parameters outside its embeddings (Kaplan et al. 2020).
Attention's L^2 terms, the heads and padding are left out: a slight undercount, the same for all.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PEAK_TFLOPS = 790.0  # H100 dense bf16, as issue 6 and the device notes state
FLOPS_FORMULA = ("train TFLOP/s = 6 * N * real_tokens_per_example * examples/s / 1e12; "
                 "eval = 2 * N * ...; N = encoder parameters outside the embeddings")


def nonembedding_params(model_dir: str | Path) -> int:
    """N of the FLOP formula, counted on the meta device (no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for n, p in model.named_parameters()
               if not n.startswith(("embeddings.", "pooler.")))


def tflops(factor: int, params: int, tokens_per_example: float, rate: float | None) -> float | None:
    """factor (6 training, 2 evaluation) * N * tokens per example * examples/s, in TFLOP/s."""
    return factor * params * tokens_per_example * rate / 1e12 if rate else None


def token_lengths(dataset: Any) -> Any:
    """Real tokens of every example of a tokenized dataset (padding is added only at collation)."""
    import numpy as np
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    return np.asarray(pc.list_value_length(table["input_ids"]), dtype=np.int64)


def mean_tokens(sets: Sequence[Any]) -> float:
    """Mean real tokens per example over tokenized datasets."""
    lengths = [token_lengths(d) for d in sets]
    return sum(int(x.sum()) for x in lengths) / max(sum(len(x) for x in lengths), 1)


def padded_tokens(lengths: Sequence[Any], batches: Sequence[Any], multiple: int | None,
                  split: int = 1) -> float:
    """Tokens per example after padding each batch (or each of its ``split`` length-sorted
    micro-batches) to its longest row, rounded up to ``multiple``. ``batches`` hold rows
    (task_index, example_index) as the sampler makes them."""
    import numpy as np

    padded = rows = 0
    for batch in batches:
        tasks = np.unique(batch[:, 0])
        row_lengths = np.sort(np.concatenate([lengths[t][batch[batch[:, 0] == t, 1]] for t in tasks]))
        for chunk in np.array_split(row_lengths, split):
            longest = int(chunk.max()) if len(chunk) else 0
            padded += (-(-longest // multiple) * multiple if multiple else longest) * len(chunk)
        rows += len(batch)
    return padded / max(rows, 1)


def budgeted_tokens(lengths: Sequence[Any], batches: Sequence[Any]) -> float:
    """Tokens per example when each packed batch is rounded up to its token budget (--compile)."""
    from mtlvsift.train.batches.packing import token_budget

    total = sum(token_budget(int(sum(lengths[t][i] for t, i in batch))) for batch in batches)
    return total / max(sum(len(b) for b in batches), 1)


def loop_padding(config, data: Sequence[Any], multiple: int | None) -> dict[str, float]:
    """Tokens per example the encoder computes on the loop's epoch-0 batches: padded as the
    collator pads them ("1"), or if each batch were split into 2 or 4 length-sorted micro-batches
    (same examples per step); packed ("packed": the real tokens), and packed under --compile
    ("budgeted": each batch rounded up to its token budget)."""
    from mtlvsift.train.batches.probabilities import task_probabilities
    from mtlvsift.train.batches.sampling import epoch_schedule

    sizes = [len(d.train) for d in data]
    p = task_probabilities("size", sizes, 0) if len(sizes) > 1 else [1.0]
    schedule = epoch_schedule(sizes, p, config.batch_size, config.seed, 0,
                              config.batching or "heterogeneous")
    lengths = [token_lengths(d.train) for d in data]
    computed = {str(k): padded_tokens(lengths, schedule, multiple, k) for k in (1, 2, 4)}
    real = sum(int(lengths[t][i]) for batch in schedule for t, i in batch)
    computed["packed"] = real / max(sum(len(b) for b in schedule), 1)
    computed["budgeted"] = budgeted_tokens(lengths, schedule)
    computed["blocks"] = attention_block_tokens(lengths, schedule)
    return computed


def attention_block_tokens(lengths: Sequence[Any], batches: Sequence[Any]) -> float:
    """Places per example in packed attention's blocks (rows of a length group padded to the
    group's longest, packing.LENGTH_GROUPS): what attention computes on (DeBERTa's query, key
    and value projections too); the other layers compute the real tokens only."""
    import numpy as np

    from mtlvsift.train.batches.packing import LENGTH_GROUPS

    places = 0
    for batch in batches:
        rows = np.array([int(lengths[t][i]) for t, i in batch])
        groups = np.searchsorted(LENGTH_GROUPS, rows)
        places += sum(int(rows[groups == g].max()) * int((groups == g).sum()) for g in np.unique(groups))
    return places / max(sum(len(b) for b in batches), 1)


def computed_tokens(padding: dict[str, float], packed: bool, compiled: bool) -> float:
    """Of ``loop_padding``'s figures, the one a run computed: packed (budgeted under --compile) or
    padded."""
    return padding["1"] if not packed else padding["budgeted" if compiled else "packed"]


def collator_multiple(precision: str) -> int | None:
    """What the loop's collator pads to: a multiple of 8 under mixed precision, else the longest."""
    return 8 if precision in ("bf16", "fp16") else None


def steady_train_rate(log: list[dict], epoch_sizes: list[int], skip: int = 1) -> float | None:
    """Examples/s over train_log.jsonl's intervals after the first ``skip`` (warm-up, compilation).

    Each interval's examples come from the sampler's batch sizes (one process), its seconds from
    examples / the logged rate; evaluation and checkpoint time is not in any interval.
    """
    intervals, previous = [], 0
    for entry in log:
        steps = range(previous + 1, entry["step"] + 1)
        examples = sum(epoch_sizes[(s - 1) % len(epoch_sizes)] for s in steps)
        previous = entry["step"]
        if examples and entry["examples_per_second"] > 0:
            intervals.append((examples, examples / entry["examples_per_second"]))
    use = intervals[skip:] or intervals
    return sum(e for e, _ in use) / sum(t for _, t in use) if use else None


def steady_eval_seconds(seconds: list[float]) -> float | None:
    """Median evaluation time, the first left out when there are more (warm-up, compilation)."""
    use = seconds[1:] or seconds
    return statistics.median(use) if use else None


def sync() -> None:
    """Wait for the GPU's queued work (nothing on the CPU), so that a clock reads finished work."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
