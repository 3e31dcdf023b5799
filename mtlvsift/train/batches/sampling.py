"""Multi-task batch schedules: how many rows each task gets in an epoch, and the batches of one epoch.

The epoch's probabilities p come from ``probabilities.py``. Rows per task, ``standard`` protocol
(``standard_epoch_rows``): an epoch's length is ``sum(sizes)`` rows (``mtl_epoch="sum"``) or what
shows the target its n_t rows once at p (``"target"``: round(n_t / p_t)); task i gets the
largest-remainder share of p over it, so its epoch total is round(p_i * N) within a row; with
``max_passes`` K no task is given more than floor(K n_i) rows, the rows over a cap going to the
uncapped tasks in proportion to p (the epoch ends early when every task is capped). The epoch is
cut into ``ceil(N / B)`` global batches (a last batch smaller than the process count is merged
into the one before). ``heterogeneous`` batches spread each task's rows evenly over the epoch
(``spread_tasks``), so a task with p_i * B < 1 appears in that fraction of the batches;
``homogeneous`` batches come from one task drawn with probability ``p``. Each task draws without
replacement from its own shuffled stream and reshuffles when it runs out. The ``original``
protocol (the authors' code, ``epoch_layout``): fixed quotas per batch with their rounding, an
epoch as long as the first task to run out, the pooled rows shuffled as a whole.

Determinism and resuming: a schedule is a pure function of (sizes, p, batch size, seed, epoch,
batching, protocol, epoch length, cap); its random generators are seeded from ``(seed, epoch)``
only, never from global state. Every process builds the same global schedule and keeps its
``process_slice``. The sampler therefore keeps no state of its own: to resume, the training loop
regenerates the epoch's schedule from (seed, epoch, p), with p taken from the run history, and
skips the batches already done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import BATCHINGS, DEFAULT_PROTOCOL, MTL_EPOCHS, PROTOCOLS
from mtlvsift.train.batches.probabilities import check_choice, check_probabilities, check_sizes

_ROUND_DECIMALS = 12  # fractional parts equal up to float noise count as ties (broken by index)
# An epoch that shows the target once is at most this many sum-epochs long: a target whose
# probability is near 0 (the normalized rule, the target at its single score) would make it endless.
TARGET_EPOCH_LIMIT = 10


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise MtlvsiftError(f"The batch size must be a positive integer, got {batch_size}.")
    return int(batch_size)


# --------------------------------------------------------------------------- quotas


def largest_remainder_quotas(probabilities, total: int) -> np.ndarray:
    """``total`` rows shared out by p: the largest-remainder (Hamilton) rounding of p * total.

    Each share is the floor or the ceiling of p_i * total, so a task with p_i * total < 1 may get
    none; ties between remainders go to the lower index, so the result is deterministic.
    """
    p = check_probabilities(probabilities)
    b = _check_batch_size(total)
    ideal = p * b
    quotas = np.floor(ideal).astype(np.int64)
    remainder = b - int(quotas.sum())
    fractions = np.round(ideal - quotas, _ROUND_DECIMALS)
    quotas[np.lexsort((np.arange(p.size), -fractions))[:remainder]] += 1  # lexsort: last key first
    return quotas


def original_quotas(probabilities, batch_size: int, top_up: bool = True,
                    order: Sequence[int] | None = None) -> np.ndarray:
    """Rows per task per batch as the authors' code computed them (``--protocol original``).

    Their ``get_instances_numbers_from_proportions``: round(p_i * B) for each task (half to even,
    Python's ``round``); unless ``top_up`` is off (their uniform sampling, which keeps e.g. 14 x 9
    = 126 rows), the difference to B goes to the first task (it was meant for the largest
    fraction, but the fractions were truncated to 0); then every task left at 0 takes one row
    from the first task with the most. B = K gives one row each; B < K is an error. ``order``:
    the task indices in the authors' order (their first task is ``order[0]``), default as given.
    """
    p = check_probabilities(probabilities)
    b = _check_batch_size(batch_size)
    k = p.size
    if b < k:
        raise MtlvsiftError(f"--protocol original needs a batch of at least one row per task: "
                            f"{k} tasks, batch size {b}.")
    order = np.arange(k) if order is None else np.asarray(order, dtype=np.int64)
    if b == k:
        return np.ones(k, dtype=np.int64)
    quotas = [int(round(float(x) * b)) for x in p[order]]
    if top_up:
        quotas[0] += b - sum(quotas)
    while 0 in quotas:
        empty, donor = quotas.index(0), quotas.index(max(quotas))
        quotas[donor] -= 1
        quotas[empty] += 1
    if min(quotas) < 0:
        raise MtlvsiftError(f"The original protocol's rounding gives a task a negative quota for "
                            f"p = {np.round(p, 4).tolist()}; use --protocol standard.")
    result = np.empty(k, dtype=np.int64)
    result[order] = quotas
    return result


def epoch_batch_sizes(total_examples: int, batch_size: int, num_processes: int = 1) -> list[int]:
    """``ceil(N / B)`` batch sizes, all B except a last one holding the remainder.

    A remainder smaller than ``num_processes`` would leave a process without rows: it is merged
    into the batch before it (one batch fewer, the last one B + remainder).
    """
    b = _check_batch_size(batch_size)
    if total_examples < 0:
        raise ValueError(f"The number of examples cannot be negative, got {total_examples}.")
    full, rest = divmod(int(total_examples), b)
    if 0 < rest < num_processes and full > 0:
        return [b] * (full - 1) + [b + rest]
    return [b] * full + ([rest] if rest else [])


def standard_epoch_length(sizes: Sequence[int], probabilities, mtl_epoch: str = "sum",
                          target: int = 0) -> int:
    """Rows of a standard epoch: ``sum``: every task's; ``target``: round(n_t / p_t), what shows
    task ``target`` its rows once at p (p_t = 0: the sum; at most ``TARGET_EPOCH_LIMIT`` sums)."""
    n = check_sizes(sizes)
    p = check_probabilities(probabilities, n.size)
    total = int(n.sum())
    if check_choice("MTL epoch", mtl_epoch, MTL_EPOCHS) == "sum" or p[target] <= 0:
        return total
    return int(min(round(n[target] / p[target]), TARGET_EPOCH_LIMIT * total))


def capped_rows(sizes: Sequence[int], probabilities, total: int,
                max_passes: float | None = None) -> np.ndarray:
    """``total`` rows shared out by p (largest remainder), no task over floor(K n_i) rows.

    A task whose share is over its cap gets the cap, and the rest is shared again among the
    others by their p, until no share is over; when every task with p > 0 is capped, the epoch
    has fewer than ``total`` rows.
    """
    n = check_sizes(sizes)
    p = check_probabilities(probabilities, n.size)
    if max_passes is None:
        return largest_remainder_quotas(p, total)
    caps = np.floor(float(max_passes) * n + 1e-9).astype(np.int64)  # 3 x 2,490 is 7,470 exactly
    rows = np.zeros(n.size, dtype=np.int64)
    capped = np.zeros(n.size, dtype=bool)
    while True:
        free = np.flatnonzero(~capped)
        remaining = total - int(rows[capped].sum())
        mass = float(p[free].sum())
        if free.size == 0 or mass <= 0 or remaining <= 0:
            return rows  # every task that can take rows is capped: the epoch ends there
        share = p[free] / mass * remaining
        over = free[share > caps[free] + 1e-9]
        if over.size == 0:
            rows[free] = largest_remainder_quotas(p[free] / mass, remaining)
            return rows
        rows[over], capped[over] = caps[over], True


def standard_epoch_rows(sizes: Sequence[int], probabilities, mtl_epoch: str = "sum",
                        max_passes: float | None = None, target: int = 0) -> np.ndarray:
    """Each task's rows in one standard-protocol epoch (module docstring)."""
    total = standard_epoch_length(sizes, probabilities, mtl_epoch, target)
    return capped_rows(sizes, probabilities, total, max_passes)


def passes(rows: Sequence[int], sizes: Sequence[int]) -> list[float]:
    """Each task's passes over its training data: rows shown / its training size."""
    return [int(r) / int(n) for r, n in zip(rows, check_sizes(sizes))]


@dataclass(frozen=True)
class EpochLayout:
    """What an epoch holds before any random draw."""

    batch_sizes: list[int]
    rows: np.ndarray | None  # rows per task in the epoch; None: drawn per batch (homogeneous)
    quotas: np.ndarray | None  # original protocol: the rows per task per batch (k_i)


def epoch_layout(sizes: Sequence[int], probabilities, batch_size: int,
                 batching: str = "heterogeneous", num_processes: int = 1,
                 protocol: str = DEFAULT_PROTOCOL, sampling: str | None = None,
                 order: Sequence[int] | None = None, mtl_epoch: str = "sum",
                 max_passes: float | None = None) -> EpochLayout:
    """The batch sizes and per-task rows of one epoch.

    ``standard``: ``standard_epoch_rows`` (the first task is the target of ``mtl_epoch``) in
    ``epoch_batch_sizes`` batches; homogeneous epochs draw each batch's task with p, so they take
    the epoch's length and no cap. ``original``: quotas k
    from ``original_quotas`` (``sampling`` uniform: no top-up; ``order``: the authors' task
    order), and the epoch ends when the first task runs out: min_i floor(N_i / k_i) batches'
    worth of every task (heterogeneous: pooled, so the last batch may be short; homogeneous:
    each task's full batches of B).
    """
    n = check_sizes(sizes)
    p = check_probabilities(probabilities, n.size)
    b = _check_batch_size(batch_size)
    batching = check_choice("batching", batching, BATCHINGS)
    protocol = check_choice("protocol", protocol, PROTOCOLS)
    if protocol == "standard":
        if batching == "homogeneous":
            if max_passes is not None:
                raise ValueError("A cap on passes needs heterogeneous batches.")  # config.py says why
            length = standard_epoch_length(n, p, mtl_epoch)
            return EpochLayout(epoch_batch_sizes(length, b, num_processes), None, None)
        rows = standard_epoch_rows(n, p, mtl_epoch, max_passes)
        if rows.sum() == 0:
            raise MtlvsiftError(f"--max-passes {max_passes:g} leaves no task a single row "
                                f"(task sizes {n.tolist()}): raise it.")
        return EpochLayout(epoch_batch_sizes(int(rows.sum()), b, num_processes), rows, None)
    if mtl_epoch != "sum" or max_passes is not None:
        raise ValueError("The original protocol has the authors' epochs.")  # config.py says why
    quotas = original_quotas(p, b, top_up=sampling != "uniform", order=order)
    per_task = int(np.min(n // quotas))
    if per_task == 0:
        short = int(np.argmin(n // quotas))
        raise MtlvsiftError(
            f"--protocol original drops incomplete batches, and a task with {n[short]} training "
            f"examples (task {short + 1} of {n.size}) fills not one batch at {quotas[short]} rows "
            f"per batch. Lower --batch-size or use --protocol standard.")
    rows = per_task * quotas
    if batching == "homogeneous":
        full = rows // b
        return EpochLayout([b] * int(full.sum()), full * b, quotas)
    return EpochLayout(epoch_batch_sizes(int(rows.sum()), b, num_processes), rows, quotas)


# --------------------------------------------------------------------------- schedules


def _stream(rng: np.random.Generator, size: int, demand: int) -> np.ndarray:
    """The first ``demand`` draws of a task's stream: back-to-back fresh permutations of range(size)."""
    rounds = -(-demand // size)
    if rounds == 0:
        return np.zeros(0, dtype=np.int64)
    # One call shuffles every pass (each row independently), so tiny tasks need no Python loop.
    table = np.broadcast_to(np.arange(size, dtype=np.int64), (rounds, size))
    return rng.permuted(table, axis=1).ravel()[:demand]


def spread_tasks(rows: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """The task of each row of an epoch, each task's rows spread evenly over the epoch.

    Task i's m-th row sits at (m + u_i) / rows_i, u_i uniform in [0, 1) (systematic sampling
    with a random start); sorting all positions interleaves the tasks, so every batch holds each
    task in proportion (within a couple of rows) and a task with fewer rows than batches appears
    in that fraction of the batches.
    """
    rows = np.asarray(rows, dtype=np.int64)
    tasks = np.repeat(np.arange(rows.size), rows)
    within = np.arange(tasks.size) - np.repeat(np.cumsum(rows) - rows, rows)
    position = (within + rng.random(rows.size)[tasks]) / rows[tasks]
    return tasks[np.lexsort((tasks, position))]


def epoch_schedule(
    sizes: Sequence[int],
    probabilities,
    batch_size: int,
    seed: int,
    epoch: int,
    batching: str = "heterogeneous",
    num_processes: int = 1,
    protocol: str = DEFAULT_PROTOCOL,
    sampling: str | None = None,
    order: Sequence[int] | None = None,
    mtl_epoch: str = "sum",
    max_passes: float | None = None,
) -> list[np.ndarray]:
    """The global batches of one epoch, each an int64 array of rows (task_index, example_index).

    Their sizes are ``epoch_layout(...).batch_sizes``.
    """
    n = check_sizes(sizes)
    k = n.size
    p = check_probabilities(probabilities, k)
    if int(seed) != seed or seed < 0:
        raise MtlvsiftError(f"The seed must be a non-negative integer, got {seed}.")
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"The epoch must be a non-negative integer, got {epoch}.")
    layout = epoch_layout(n, p, batch_size, batching, num_processes, protocol, sampling, order,
                          mtl_epoch, max_passes)
    batching, original = check_choice("batching", batching, BATCHINGS), protocol == "original"
    batch_sizes = np.asarray(layout.batch_sizes, dtype=np.int64)
    b = int(batch_size)
    # One generator per task stream, one for batch-level draws and one for spreading the
    # tasks, from (seed, epoch) alone (spawned children do not depend on how many follow).
    *task_rngs, batch_rng, spread_rng = [
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), int(epoch)]).spawn(k + 2)
    ]

    if batching == "homogeneous":
        if layout.rows is None:  # each batch's task drawn with p
            batch_tasks = batch_rng.choice(k, size=batch_sizes.size, p=p)
        else:  # original: each task's full batches, in a shuffled order
            batch_tasks = batch_rng.permutation(np.repeat(np.arange(k), layout.rows // b))
        tasks = np.repeat(batch_tasks, batch_sizes)
    elif original:
        tasks = np.repeat(np.arange(k), layout.rows)  # the epoch's pool, shuffled below
    else:
        tasks = spread_tasks(layout.rows, spread_rng)
    demand = np.bincount(tasks, minlength=k)

    # Rows are batch-major, so a task's rows in flat order consume its stream in order.
    examples = np.empty(tasks.size, dtype=np.int64)
    by_task = np.argsort(tasks, kind="stable")
    examples[by_task] = np.concatenate(
        [_stream(task_rngs[i], int(n[i]), int(demand[i])) for i in range(k)]
    )
    rows = np.stack([tasks.astype(np.int64), examples], axis=1)

    if batching == "heterogeneous" and original:
        # The original shuffled the pool as a whole: a batch holds k_i rows of task i on average.
        rows = rows[batch_rng.permutation(rows.shape[0])]
    elif batching == "heterogeneous":
        # Shuffle rows within each batch: full batches are the rows of a (batches, B) table.
        num_full = int(np.sum(batch_sizes == b))
        head = rows.shape[0] if num_full == batch_sizes.size else rows.shape[0] - int(batch_sizes[-1])
        order_in_batch = np.empty(rows.shape[0], dtype=np.int64)
        order_in_batch[:head] = batch_rng.permuted(np.arange(head).reshape(num_full, b), axis=1).ravel()
        order_in_batch[head:] = head + batch_rng.permutation(rows.shape[0] - head)
        rows = rows[order_in_batch]
    return np.split(rows, np.cumsum(batch_sizes)[:-1])


def process_slice(batch: np.ndarray, process_index: int, num_processes: int) -> np.ndarray:
    """This process's contiguous share of a global batch; the W shares partition it (np.array_split)."""
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(f"Process index {process_index} is not in range for {num_processes} processes.")
    return np.array_split(batch, num_processes)[process_index]


def schedule_counts(schedule: Sequence[np.ndarray], num_tasks: int) -> np.ndarray:
    """Examples per task over a list of batches."""
    if len(schedule) == 0:
        return np.zeros(num_tasks, dtype=np.int64)
    tasks = np.concatenate([np.asarray(batch)[:, 0] for batch in schedule])
    return np.bincount(tasks, minlength=num_tasks).astype(np.int64)
