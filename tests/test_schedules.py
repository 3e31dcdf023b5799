"""Epoch schedules of the standard protocol (heterogeneous and homogeneous batches): exact pinned
schedules, draws without replacement, determinism, resume in a new process, process slices.
Probabilities and quotas: test_sampling.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO_ROOT
from mtlvsift.names import BATCHINGS
from mtlvsift.train.batches.probabilities import size_probabilities
from mtlvsift.train.batches.sampling import (epoch_batch_sizes, epoch_schedule, largest_remainder_quotas, process_slice,
                                             schedule_counts)

GLUE_SIZES = (392702, 363846, 104743, 67349, 8551, 5749, 3668, 2490, 635)


def _task_sequence(schedule: list[np.ndarray], task: int) -> np.ndarray:
    """A task's example indices in schedule order."""
    rows = np.concatenate(schedule)
    return rows[rows[:, 0] == task, 1]


def test_epoch_batch_sizes():
    assert epoch_batch_sizes(10, 4) == [4, 4, 2]
    assert epoch_batch_sizes(8, 4) == [4, 4]
    assert epoch_batch_sizes(3, 128) == [3]
    assert epoch_batch_sizes(0, 4) == []


@pytest.mark.parametrize("batching", BATCHINGS)
@pytest.mark.parametrize("n, batch_size", [(10, 3), (97, 8), (5, 5), (4, 16)])
def test_single_task_is_one_permutation(batching, n, batch_size):
    schedule = epoch_schedule((n,), [1.0], batch_size, seed=3, epoch=2, batching=batching)
    assert [len(b) for b in schedule] == epoch_batch_sizes(n, batch_size)
    rows = np.concatenate(schedule)
    assert rows.dtype == np.int64 and rows.shape == (n, 2)
    assert np.all(rows[:, 0] == 0)
    assert sorted(rows[:, 1].tolist()) == list(range(n))


def test_heterogeneous_counts_follow_p_over_the_epoch_and_in_each_batch():
    sizes = (600, 300, 100)
    p = [0.55, 0.3, 0.15]
    batch_size = 16
    schedule = epoch_schedule(sizes, p, batch_size, seed=0, epoch=0)
    lengths = epoch_batch_sizes(sum(sizes), batch_size)
    assert [len(b) for b in schedule] == lengths  # 62 batches of 16 and one of 8
    for batch, length in zip(schedule, lengths):
        assert batch.dtype == np.int64 and batch.shape == (length, 2)
        counts = schedule_counts([batch], 3)
        assert np.all(np.abs(counts - np.asarray(p) * length) < 2)  # 8.8, 4.8, 2.4 per 16
    # Over the epoch: p * 1000 rows exactly, not 63 times the rounding of one batch's quotas.
    assert schedule_counts(schedule, 3).tolist() == [550, 300, 150]
    # A task with p * B < 1 is in about that fraction of the batches, one row at a time.
    schedule = epoch_schedule(sizes, [0.98, 0.015, 0.005], batch_size, seed=0, epoch=0)
    rare = [schedule_counts([b], 3)[2] for b in schedule]
    assert sum(rare) == 5 and max(rare) == 1


def test_heterogeneous_batches_are_shuffled():
    schedule = epoch_schedule((600, 300, 100), [0.5, 0.3, 0.2], 16, seed=0, epoch=0)
    assert any(np.any(np.diff(b[:, 0]) < 0) for b in schedule)


def test_heterogeneous_streams_draw_without_replacement():
    sizes = (50, 7, 23)
    p = [0.2, 0.5, 0.3]  # task 1 (7 examples) wraps around its stream many times
    schedule = epoch_schedule(sizes, p, 10, seed=1, epoch=0)
    for task, n in enumerate(sizes):
        seq = _task_sequence(schedule, task)
        counts = np.bincount(seq, minlength=n)
        assert counts.max() - counts.min() <= 1  # every pass covers every example once
        # The task's rows in the batches that fit within its first pass are distinct.
        cumulative = np.cumsum([schedule_counts([b], len(sizes))[task] for b in schedule])
        first = np.concatenate([schedule[i] for i in np.flatnonzero(cumulative <= n)])
        first = first[first[:, 0] == task, 1]
        assert len(np.unique(first)) == len(first) > 0


def test_homogeneous_streams_pass_by_pass():
    sizes = (13, 40)
    schedule = epoch_schedule(sizes, [0.9, 0.1], 4, seed=5, epoch=0, batching="homogeneous")
    for task, n in enumerate(sizes):
        seq = _task_sequence(schedule, task)
        passes = [seq[i : i + n] for i in range(0, len(seq), n)]
        for chunk in passes:
            assert len(np.unique(chunk)) == len(chunk)
        full = [c for c in passes if len(c) == n]
        for chunk in full:
            assert sorted(chunk.tolist()) == list(range(n))
    seq = _task_sequence(schedule, 0)
    assert len(seq) >= 26 and not np.array_equal(seq[:13], seq[13:26])  # reshuffled


def test_homogeneous_batches_are_single_task_and_follow_p():
    sizes = (3000, 1000)
    p = [0.75, 0.25]
    schedule = epoch_schedule(sizes, p, 4, seed=0, epoch=0, batching="homogeneous")
    assert len(schedule) == 1000
    batch_tasks = []
    for batch in schedule:
        assert len(np.unique(batch[:, 0])) == 1
        batch_tasks.append(batch[0, 0])
    freq = np.bincount(batch_tasks, minlength=2) / len(schedule)
    np.testing.assert_allclose(freq, p, atol=0.05)  # 3.6 standard deviations


def test_homogeneous_zero_probability_task_never_drawn():
    schedule = epoch_schedule((10, 10), [1.0, 0.0], 3, seed=0, epoch=0, batching="homogeneous")
    assert schedule_counts(schedule, 2).tolist() == [20, 0]


@pytest.mark.parametrize("batching", BATCHINGS)
def test_determinism_and_independence_of_global_state(batching):
    args = ((30, 17, 5), [0.5, 0.3, 0.2], 8)
    np.random.seed(0)
    a = epoch_schedule(*args, seed=4, epoch=1, batching=batching)
    np.random.seed(123)
    np.random.random(10)
    b = epoch_schedule(*args, seed=4, epoch=1, batching=batching)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for other in (
        epoch_schedule(*args, seed=5, epoch=1, batching=batching),
        epoch_schedule(*args, seed=4, epoch=2, batching=batching),
    ):
        assert not np.array_equal(np.concatenate(a), np.concatenate(other))


# sizes (3, 2), p (0.5, 0.5), batch size 2: N = 5 examples in batches of 2, 2 and 1.
# heterogeneous: the epoch's rows are (3, 2) (2.5, 2.5: the tie goes to task 0), one pass over
# each task, spread over the batches from a random start per task (seed 0 epoch 0: 1, 1 in each
# full batch; seed 1: both task-0 rows first); rows are shuffled within each batch.
# homogeneous: batch tasks drawn with p; task 1 draws 3 rows from 2 examples and wraps around.
# The permutations are those of numpy's PCG64 streams spawned from SeedSequence([seed, epoch]).
PINNED_SCHEDULES = [
    ((3, 2), (0.5, 0.5), 2, 0, 0, "heterogeneous", [[[1, 0], [0, 0]], [[0, 1], [1, 1]], [[0, 2]]]),
    ((3, 2), (0.5, 0.5), 2, 0, 1, "heterogeneous", [[[1, 0], [0, 2]], [[1, 1], [0, 0]], [[0, 1]]]),
    ((3, 2), (0.5, 0.5), 2, 1, 0, "heterogeneous", [[[0, 1], [0, 0]], [[0, 2], [1, 1]], [[1, 0]]]),
    ((3, 2), (0.5, 0.5), 2, 0, 0, "homogeneous", [[[1, 0], [1, 1]], [[0, 0], [0, 1]], [[1, 0]]]),
    ((3, 2), (0.5, 0.5), 2, 0, 1, "homogeneous", [[[1, 0], [1, 1]], [[0, 2], [0, 0]], [[0, 1]]]),
    ((3, 2), (0.5, 0.5), 2, 1, 0, "homogeneous", [[[0, 1], [0, 0]], [[0, 2], [0, 0]], [[0, 1]]]),
    ((3, 2), (0.8, 0.2), 2, 0, 0, "homogeneous", [[[1, 0], [1, 1]], [[0, 0], [0, 1]], [[0, 2]]]),
    # Epoch rows (4, 3, 2) (4.5, 2.7, 1.8: the 2 left go to .8 and .7), spread as (2, 1, 1),
    # (1, 2, 1), (1, 0, 0): one pass over every task.
    ((4, 3, 2), (0.5, 0.3, 0.2), 4, 0, 0, "heterogeneous",
     [[[2, 1], [0, 1], [0, 0], [1, 0]], [[0, 3], [1, 1], [1, 2], [2, 0]], [[0, 2]]]),
    ((4, 3, 2), (0.5, 0.3, 0.2), 4, 0, 0, "homogeneous",
     [[[0, 1], [0, 0], [0, 3], [0, 2]], [[1, 0], [1, 2], [1, 1], [1, 1]], [[0, 0]]]),
]


@pytest.mark.parametrize("sizes, p, batch_size, seed, epoch, batching, expected", PINNED_SCHEDULES)
def test_pinned_small_schedules(sizes, p, batch_size, seed, epoch, batching, expected):
    """Exact arrays: any change to the quotas, the streams or the use of the generators shows."""
    schedule = epoch_schedule(sizes, p, batch_size, seed=seed, epoch=epoch, batching=batching)
    assert len(schedule) == len(expected)
    for batch, rows in zip(schedule, expected):
        assert batch.dtype == np.int64
        np.testing.assert_array_equal(batch, np.array(rows, dtype=np.int64))
    if batching == "heterogeneous":
        assert schedule_counts(schedule, len(sizes)).tolist() == \
            largest_remainder_quotas(p, sum(sizes)).tolist()


def _streams_continue(batches: list[np.ndarray], sizes) -> bool:
    """Whether, at every batch boundary, each task has used every example equally often, give or
    take one: no example comes back before its pass (a permutation of the task) is complete."""
    counts = np.zeros((len(sizes), max(sizes)), dtype=np.int64)
    for batch in batches:
        np.add.at(counts, (batch[:, 0], batch[:, 1]), 1)
        for task, n in enumerate(sizes):
            if counts[task, :n].max() - counts[task, :n].min() > 1:
                return False
    return True


_RESUME_SCRIPT = """
import json, sys
import numpy as np
np.random.seed(987)  # the global state of a fresh process differs: it must not matter
from mtlvsift.train.batches.sampling import epoch_schedule
sizes, p, batch_size, seed, epoch, batching, done = json.loads(sys.argv[1])
tail = epoch_schedule(sizes, p, batch_size, seed, epoch, batching=batching)[done:]
print(json.dumps([b.tolist() for b in tail]))
"""


@pytest.mark.parametrize("batching", BATCHINGS)
def test_resume_in_a_new_process_continues_the_epoch(batching):
    """What the training loop does on resume: a new process regenerates the epoch's schedule
    from (seed, epoch, p of the run history) and skips the batches already done."""
    sizes, p, batch_size, seed, epoch, done = (30, 17, 5), [0.2, 0.3, 0.5], 7, 2, 3, 4
    full = epoch_schedule(sizes, p, batch_size, seed=seed, epoch=epoch, batching=batching)
    assert len(full) == 8  # 52 examples: 7 batches of 7 and one of 3
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run(
        [sys.executable, "-c", _RESUME_SCRIPT, json.dumps([sizes, p, batch_size, seed, epoch, batching, done])],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    resumed = [np.asarray(b, dtype=np.int64).reshape(-1, 2) for b in json.loads(result.stdout)]
    assert len(resumed) == len(full) - done == 4
    for original, again in zip(full[done:], resumed):
        np.testing.assert_array_equal(original, again)

    # The skipped batches and the resumed ones form one draw without replacement per pass: each
    # task's stream continues where the interrupted process left it.
    stitched = full[:done] + resumed
    assert _streams_continue(stitched, sizes)
    # Tasks whose rows this epoch all lie in their first pass: the resumed batches draw none of
    # the examples the skipped ones drew (heterogeneous: tasks 0 and 1; homogeneous: task 1).
    done_counts, rest_counts = schedule_counts(full[:done], 3), schedule_counts(resumed, 3)
    one_pass = [t for t in range(3) if done_counts[t] > 0 and done_counts[t] + rest_counts[t] <= sizes[t]]
    assert one_pass
    for task in one_pass:
        before, after = (np.concatenate(part) for part in (full[:done], resumed))
        before, after = before[before[:, 0] == task, 1], after[after[:, 0] == task, 1]
        assert len(set(before.tolist())) == len(before) and len(set(after.tolist())) == len(after)
        assert not set(before.tolist()) & set(after.tolist()), task
    # The check is not vacuous: restarting the streams at the skip would repeat examples.
    restarted = epoch_schedule(sizes, p, batch_size, seed=seed, epoch=epoch, batching=batching)
    assert not _streams_continue(full[:done] + restarted[: len(full) - done], sizes)

    # The schedule depends on p, seed and epoch: resuming with any other one would change it.
    for changed in ({"probabilities": [0.5, 0.3, 0.2]}, {"seed": seed + 1}, {"epoch": epoch + 1}):
        args = {"sizes": sizes, "probabilities": p, "batch_size": batch_size, "seed": seed,
                "epoch": epoch, "batching": batching, **changed}
        other = epoch_schedule(**args)[done:]
        assert not np.array_equal(np.concatenate(other), np.concatenate(resumed)), changed


@pytest.mark.parametrize("num_processes", [1, 2, 3, 8])
def test_process_slices_partition_every_batch(num_processes):
    # Batches of 10 and a last one of 5: neither divisible by 3 or 8 (some slices are empty).
    schedule = epoch_schedule((20, 15), [0.6, 0.4], 10, seed=0, epoch=0)
    assert [len(b) for b in schedule] == [10, 10, 10, 5]
    for batch in schedule:
        slices = [process_slice(batch, i, num_processes) for i in range(num_processes)]
        assert np.array_equal(np.concatenate(slices), batch)
        lengths = [len(s) for s in slices]
        assert max(lengths) - min(lengths) <= 1
    with pytest.raises(ValueError):
        process_slice(schedule[0], num_processes, num_processes)


def test_schedule_counts_empty():
    assert schedule_counts([], 3).tolist() == [0, 0, 0]


@pytest.mark.parametrize("batching", BATCHINGS)
def test_glue_scale_epoch(batching):
    p = size_probabilities(GLUE_SIZES)
    schedule = epoch_schedule(GLUE_SIZES, p, 128, seed=0, epoch=1, batching=batching)
    n_total = sum(GLUE_SIZES)
    assert len(schedule) == -(-n_total // 128)
    counts = schedule_counts(schedule, len(GLUE_SIZES))
    assert counts.sum() == n_total
    if batching == "heterogeneous":  # p * N = every task's size: one pass over each
        assert counts.tolist() == list(GLUE_SIZES)
