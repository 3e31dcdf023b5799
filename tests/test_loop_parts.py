"""The loop's pure parts: evaluation points within an epoch, the tail-batch merge, the optimizer's
parameter groups, the command builder."""

from __future__ import annotations

import numpy as np
import pytest

from mtlvsift.commands import train_command
from mtlvsift.train.plan import eval_points
from mtlvsift.train.batches.sampling import epoch_batch_sizes, epoch_schedule


@pytest.mark.parametrize("steps, every, expected", [
    (6, 0.5, {3, 6}),            # the paper's half epochs
    (7, 0.5, {4, 7}),            # rounded up: never before the midpoint
    (1, 0.5, {1}),               # one step: one evaluation, at the end
    (10, 1.0, {10}),
    (10, 0.25, {3, 5, 8, 10}),
    (10, 0.3, {3, 6, 9, 10}),    # 1 / 0.3 is not whole: the end of the epoch is added
    (3, 0.1, {1, 2, 3}),         # more points than steps: each step once
])
def test_eval_points(steps, every, expected):
    assert eval_points(steps, every) == expected


def test_a_tail_smaller_than_the_process_count_is_merged():
    assert epoch_batch_sizes(21, 8) == [8, 8, 5]
    assert epoch_batch_sizes(17, 8, num_processes=2) == [8, 9]  # a tail of 1 row for 2 processes
    assert epoch_batch_sizes(18, 8, num_processes=2) == [8, 8, 2]
    assert epoch_batch_sizes(5, 8, num_processes=8) == [5]  # one batch: nothing to merge into
    schedule = epoch_schedule([10, 7], [0.5, 0.5], 8, seed=0, epoch=0, num_processes=2)
    assert [len(b) for b in schedule] == [8, 9]
    rows = np.concatenate(schedule)
    assert np.bincount(rows[:, 0]).sum() == 17


def test_train_command_quotes_and_loops_over_seeds():
    assert train_command("single", "rte", options={"model": "minilm"}, seeds=[3]) == \
        "accelerate launch --quiet scripts/train_stilts.py --target rte --model minilm --seed 3"
    assert train_command("mtl", "rte", ["mnli"], {"sampling": "uniform", "lr": 2e-05,
                                                  "keep_state": True, "data_seed": None},
                         seeds=[0, 1]) == (
        "for seed in 0 1; do accelerate launch --quiet scripts/train_mtl.py --target rte --support mnli "
        "--sampling uniform --lr 2e-05 --keep-state --seed $seed; done")
    assert train_command("mtl_all", options={"output_dir": "my runs; rm -rf /"}, seeds=[0]) == \
        "accelerate launch --quiet scripts/train_mtl_all.py --output-dir 'my runs; rm -rf /' --seed 0"
    with pytest.raises(ValueError):
        train_command("nope")
