"""Multi-task sampling probabilities: each epoch's p over the tasks (``names.SAMPLINGS``).

``uniform`` (1/K), ``size`` (n_i / sum n_j), ``temperature`` (n_i^(1/T) / sum_j n_j^(1/T), as
jiant and tasknet offer it: T = 1 is ``size``, a large T tends to ``uniform``) and ``dynamic``
(``size`` in the first epoch, then a function of the gap between each task's single-task score
and its current multi-task score; ``DYNAMIC_RULES``: ``softmax`` as in the paper's own code, or
``normalized`` as in Gottumukkala et al. 2020). Pure functions of their arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import DYNAMIC_RULES, SAMPLINGS

def check_choice(kind: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` in its canonical spelling, or raise an error that lists the valid choices."""
    canonical = str(value).strip().lower()
    if canonical not in choices:
        raise MtlvsiftError(f"Unknown {kind} '{value}'; choose one of: {', '.join(choices)}.")
    return canonical


def check_sizes(sizes: Sequence[int]) -> np.ndarray:
    arr = np.asarray(sizes)
    if arr.ndim != 1 or arr.size == 0:
        raise MtlvsiftError("Multi-task sampling needs at least one task.")
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(arr == np.floor(arr)):
        raise ValueError(f"Task sizes must be integers, got {list(sizes)}.")
    arr = arr.astype(np.int64)
    if np.any(arr < 1):
        raise MtlvsiftError(f"Every task needs at least one training example; task sizes: {arr.tolist()}.")
    return arr


def check_probabilities(probabilities, num_tasks: int | None = None) -> np.ndarray:
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


# --------------------------------------------------------------------------- probabilities


def uniform_probabilities(sizes: Sequence[int]) -> np.ndarray:
    """p_i = 1 / K."""
    k = check_sizes(sizes).size
    return np.full(k, 1.0 / k)


def size_probabilities(sizes: Sequence[int]) -> np.ndarray:
    """p_i = n_i / sum_j n_j."""
    n = check_sizes(sizes).astype(np.float64)
    return n / n.sum()


def temperature_probabilities(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """p_i = n_i^(1/T) / sum_j n_j^(1/T) (in logs: the largest task's share cannot overflow)."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise MtlvsiftError(f"--temperature must be a positive number, got {temperature}.")
    logits = np.log(check_sizes(sizes).astype(np.float64)) / float(temperature)
    e = np.exp(logits - logits.max())
    return e / e.sum()


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
    temperature: float | None = None,
) -> np.ndarray:
    """The probabilities of one epoch; ``dynamic`` uses ``size`` until current scores exist."""
    sampling = check_choice("sampling", sampling, SAMPLINGS)
    rule = check_choice("dynamic rule", rule, DYNAMIC_RULES)  # fail on a typo before epoch 1
    if sampling == "uniform":
        return uniform_probabilities(sizes)
    if sampling == "temperature":
        if temperature is None:
            raise ValueError("Temperature sampling needs a temperature.")
        return temperature_probabilities(sizes, temperature)
    if sampling == "size" or epoch == 0 or current_scores is None:
        return size_probabilities(sizes)
    if single_scores is None:
        raise ValueError("Dynamic sampling after the first epoch needs the single-task dev scores.")
    k = check_sizes(sizes).size
    if len(single_scores) != k or len(current_scores) != k:
        raise ValueError(f"Dynamic sampling needs {k} single-task and {k} current scores.")
    return dynamic_probabilities(single_scores, current_scores, rule)
