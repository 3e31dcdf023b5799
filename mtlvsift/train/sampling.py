"""Multi-task sampling: per-epoch task probabilities and the batch schedule of one epoch.

Probabilities (``SAMPLINGS``): ``uniform`` (1/K), ``size`` (n_i / sum n_j) and ``dynamic``
(``size`` in the first epoch, then a function of the gap between each task's single-task dev
score and its current multi-task dev score; ``DYNAMIC_RULES``: ``softmax`` as in the paper's own
code, or ``normalized`` as in Gottumukkala et al. 2020).

Schedules (``BATCHINGS``): an epoch is ``sum(sizes)`` examples cut into ``ceil(N / B)`` global
batches (a last batch smaller than the process count is merged into the one before). ``heterogeneous`` batches mix tasks with largest-remainder quotas of ``p * b`` (every task
at least one row); ``homogeneous`` batches come from one task drawn with probability ``p``. Each
task draws without replacement from its own shuffled stream and reshuffles when it runs out.

Determinism and resuming: a schedule is a pure function of (sizes, p, batch size, seed, epoch,
batching); its random generators are seeded from ``(seed, epoch)`` only, never from global state.
Every process builds the same global schedule and keeps its ``process_slice``. The sampler
therefore keeps no state of its own: to resume, the training loop regenerates the epoch's schedule
from (seed, epoch, p), with p taken from the run history, and skips the batches already done.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtlvsift.errors import MtlvsiftError

SAMPLINGS = ("dynamic", "size", "uniform")
BATCHINGS = ("heterogeneous", "homogeneous")
DYNAMIC_RULES = ("softmax", "normalized")

_ROUND_DECIMALS = 12  # fractional parts equal up to float noise count as ties (broken by index)


def check_choice(kind: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` in its canonical spelling, or raise an error that lists the valid choices."""
    canonical = str(value).strip().lower()
    if canonical not in choices:
        raise MtlvsiftError(f"Unknown {kind} '{value}'; choose one of: {', '.join(choices)}.")
    return canonical


def _check_sizes(sizes: Sequence[int]) -> np.ndarray:
    arr = np.asarray(sizes)
    if arr.ndim != 1 or arr.size == 0:
        raise MtlvsiftError("Multi-task sampling needs at least one task.")
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(arr == np.floor(arr)):
        raise ValueError(f"Task sizes must be integers, got {list(sizes)}.")
    arr = arr.astype(np.int64)
    if np.any(arr < 1):
        raise MtlvsiftError(f"Every task needs at least one training example; task sizes: {arr.tolist()}.")
    return arr


def _check_probabilities(probabilities, num_tasks: int | None = None) -> np.ndarray:
    """A float64 vector of non-negative, finite probabilities summing to 1 (renormalised exactly)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError("Probabilities must be a non-empty vector.")
    if num_tasks is not None and p.size != num_tasks:
        raise ValueError(f"Got {p.size} probabilities for {num_tasks} tasks.")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"Probabilities must be finite and non-negative, got {p.tolist()}.")
    total = p.sum()
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"Probabilities must sum to 1, got sum {total} for {p.tolist()}.")
    return p / total


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise MtlvsiftError(f"The batch size must be a positive integer, got {batch_size}.")
    return int(batch_size)


# --------------------------------------------------------------------------- probabilities


def uniform_probabilities(sizes: Sequence[int]) -> np.ndarray:
    """p_i = 1 / K."""
    k = _check_sizes(sizes).size
    return np.full(k, 1.0 / k)


def size_probabilities(sizes: Sequence[int]) -> np.ndarray:
    """p_i = n_i / sum_j n_j."""
    n = _check_sizes(sizes).astype(np.float64)
    return n / n.sum()


def dynamic_probabilities(
    single_scores: Sequence[float], current_scores: Sequence[float], rule: str = "softmax"
) -> np.ndarray:
    """Probabilities from the gaps g_i = single_i - current_i between dev scores (in [0, 1]).

    ``softmax`` (the paper's code): p = softmax(g). ``normalized`` (Gottumukkala et al. 2020):
    p_i = max(g_i, 0) / sum_j max(g_j, 0), uniform when no task lags its single-task score.
    """
    rule = check_choice("dynamic rule", rule, DYNAMIC_RULES)
    single = np.asarray(single_scores, dtype=np.float64)
    current = np.asarray(current_scores, dtype=np.float64)
    if single.ndim != 1 or single.shape != current.shape or single.size == 0:
        raise ValueError(
            f"Need one single-task and one current score per task, got {single.size} and {current.size}."
        )
    if not (np.all(np.isfinite(single)) and np.all(np.isfinite(current))):
        raise ValueError(f"Dev scores must be finite: single {single.tolist()}, current {current.tolist()}.")
    gaps = single - current
    if rule == "softmax":
        e = np.exp(gaps - gaps.max())  # shifting by the max keeps exp from overflowing
        return e / e.sum()
    positive = np.maximum(gaps, 0.0)
    total = positive.sum()
    if total <= 0:
        return np.full(gaps.size, 1.0 / gaps.size)
    return positive / total


def task_probabilities(
    sampling: str,
    sizes: Sequence[int],
    epoch: int,
    single_scores: Sequence[float] | None = None,
    current_scores: Sequence[float] | None = None,
    rule: str = "softmax",
) -> np.ndarray:
    """The probabilities of one epoch; ``dynamic`` uses ``size`` until current scores exist."""
    sampling = check_choice("sampling", sampling, SAMPLINGS)
    rule = check_choice("dynamic rule", rule, DYNAMIC_RULES)  # fail on a typo before epoch 1
    if sampling == "uniform":
        return uniform_probabilities(sizes)
    if sampling == "size" or epoch == 0 or current_scores is None:
        return size_probabilities(sizes)
    if single_scores is None:
        raise ValueError("Dynamic sampling after the first epoch needs the single-task dev scores.")
    k = _check_sizes(sizes).size
    if len(single_scores) != k or len(current_scores) != k:
        raise ValueError(f"Dynamic sampling needs {k} single-task and {k} current scores.")
    return dynamic_probabilities(single_scores, current_scores, rule)


# --------------------------------------------------------------------------- quotas


def largest_remainder_quotas(probabilities, batch_size: int) -> np.ndarray:
    """Rows per task in a batch of ``batch_size``: the largest-remainder rounding of p * B.

    When B >= K every task gets at least one row: each task rounded down to 0 takes one from the
    task with the largest quota (ties by index). When B < K, the B most probable tasks get one.
    All ties go to the lower index, so the result is deterministic.
    """
    p = _check_probabilities(probabilities)
    b = _check_batch_size(batch_size)
    k = p.size
    index = np.arange(k)
    if b < k:
        quotas = np.zeros(k, dtype=np.int64)
        quotas[np.lexsort((index, -p))[:b]] = 1  # lexsort: last key is primary
        return quotas
    ideal = p * b
    quotas = np.floor(ideal).astype(np.int64)
    remainder = b - int(quotas.sum())
    fractions = np.round(ideal - quotas, _ROUND_DECIMALS)
    quotas[np.lexsort((index, -fractions))[:remainder]] += 1
    # At most K - 1 tasks need a row, and a donor with >= 2 always exists while one is at 0.
    for task in np.flatnonzero(quotas == 0):
        donor = int(np.argmax(quotas))  # argmax returns the first maximum: ties by index
        quotas[donor] -= 1
        quotas[task] = 1
    return quotas


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


# --------------------------------------------------------------------------- schedules


def _stream(rng: np.random.Generator, size: int, demand: int) -> np.ndarray:
    """The first ``demand`` draws of a task's stream: back-to-back fresh permutations of range(size)."""
    passes = -(-demand // size)
    if passes == 0:
        return np.zeros(0, dtype=np.int64)
    # One call shuffles every pass (each row independently), so tiny tasks need no Python loop.
    table = np.broadcast_to(np.arange(size, dtype=np.int64), (passes, size))
    return rng.permuted(table, axis=1).ravel()[:demand]


def epoch_schedule(
    sizes: Sequence[int],
    probabilities,
    batch_size: int,
    seed: int,
    epoch: int,
    batching: str = "heterogeneous",
    num_processes: int = 1,
) -> list[np.ndarray]:
    """The global batches of one epoch, each an int64 array of rows (task_index, example_index).

    Their sizes are ``epoch_batch_sizes(sum(sizes), batch_size, num_processes)``.
    """
    n = _check_sizes(sizes)
    k = n.size
    p = _check_probabilities(probabilities, k)
    b = _check_batch_size(batch_size)
    batching = check_choice("batching", batching, BATCHINGS)
    if int(seed) != seed or seed < 0:
        raise MtlvsiftError(f"The seed must be a non-negative integer, got {seed}.")
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"The epoch must be a non-negative integer, got {epoch}.")

    batch_sizes = np.asarray(epoch_batch_sizes(int(n.sum()), b, num_processes), dtype=np.int64)
    num_batches = batch_sizes.size
    # One generator per task stream and one for batch-level draws, from (seed, epoch) alone.
    *task_rngs, batch_rng = [
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), int(epoch)]).spawn(k + 1)
    ]

    if batching == "heterogeneous":
        # Only two batch sizes occur (B and the last), so two quota vectors cover the epoch.
        quotas = np.tile(largest_remainder_quotas(p, b), (num_batches, 1))
        if batch_sizes[-1] != b:
            quotas[-1] = largest_remainder_quotas(p, int(batch_sizes[-1]))
        tasks = np.repeat(np.tile(np.arange(k), num_batches), quotas.ravel())
        demand = quotas.sum(axis=0)
    else:
        batch_tasks = batch_rng.choice(k, size=num_batches, p=p)
        tasks = np.repeat(batch_tasks, batch_sizes)
        demand = np.bincount(batch_tasks, weights=batch_sizes, minlength=k).astype(np.int64)

    # Rows are batch-major, so a task's rows in flat order consume its stream in order.
    examples = np.empty(tasks.size, dtype=np.int64)
    by_task = np.argsort(tasks, kind="stable")
    examples[by_task] = np.concatenate(
        [_stream(task_rngs[i], int(n[i]), int(demand[i])) for i in range(k)]
    )
    rows = np.stack([tasks.astype(np.int64), examples], axis=1)

    if batching == "heterogeneous":
        # Shuffle rows within each batch: full batches are the rows of a (batches, B) table.
        num_full = int(np.sum(batch_sizes == b))
        head = rows.shape[0] if num_full == num_batches else rows.shape[0] - int(batch_sizes[-1])
        order = np.empty(rows.shape[0], dtype=np.int64)
        order[:head] = batch_rng.permuted(np.arange(head).reshape(num_full, b), axis=1).ravel()
        order[head:] = head + batch_rng.permutation(rows.shape[0] - head)
        rows = rows[order]
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
