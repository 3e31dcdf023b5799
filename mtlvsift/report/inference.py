"""The statistics of one MTL vs STILTs cell and of a report's cells together (issue 20).

Pure functions over seed scores (any unit; the report passes points): the chosen t-test's p value
and interval of the difference, a seeded bootstrap interval, Hedges' g, TOST equivalence, the
minimum detectable effect at 80% power, Holm and Benjamini-Hochberg corrections, the Wilson
interval of an accuracy, and the rule that gives a degenerate cell no p value at all.
Everything comes from scipy and statsmodels; nothing is written by hand that they provide.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence

import numpy as np

from mtlvsift.errors import MtlvsiftError

# scipy and statsmodels are imported by the functions that use them: the names below (the
# scripts' option choices) load without them, so compare.py --help answers at once.

TESTS = ("student", "welch")
CORRECTIONS = ("none", "holm", "bh")
_MULTITEST_METHOD = {"holm": "holm", "bh": "fdr_bh"}
MIN_SEEDS = 3  # below this a cell's p value is not worth reporting (two equal seeds give p = 0)
CONFIDENCE = 0.9  # the paper's alpha of 0.1, as an interval
POWER = 0.8
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # reports are reproducible
# Almost stochastic order: eps_min below this rejects "A is not better than B" (Dror et al. 2019;
# deepsig's documentation; 0.2 is its stricter suggestion).
ASO_THRESHOLD = 0.5
ASO_INSTALL = ("--aso needs the optional package deepsig (GPL-3.0): pip install 'mtlvsift[aso]', "
               "or leave --aso out (the report works without it).")


def degenerate_reason(a: Sequence[float], b: Sequence[float]) -> str | None:
    """Why a cell gets no p value: too few seeds on a side, or no variance on either side;
    None when it can be tested."""
    if min(len(a), len(b)) < MIN_SEEDS:
        return f"fewer than {MIN_SEEDS} seeds ({len(a)} MTL, {len(b)} STILTs)"
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return "no variance over the seeds of either method"
    return None


def t_test(a: Sequence[float], b: Sequence[float], test: str = "student",
           confidence: float = CONFIDENCE) -> tuple[float, float, tuple[float, float]]:
    """(t, p, interval of mean(a) - mean(b)) of scipy's two-sided two-sample t-test."""
    from scipy import stats as scipy_stats

    with warnings.catch_warnings():  # one constant side: scipy may warn, the result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_ind(a, b, equal_var=test != "welch")
        low, high = result.confidence_interval(confidence)
    return float(result.statistic), float(result.pvalue), (float(low), float(high))


def bootstrap_interval(a: Sequence[float], b: Sequence[float],
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), each side resampled on its own
    (seeded: the same scores give the same interval)."""
    from scipy import stats as scipy_stats

    result = scipy_stats.bootstrap(
        (np.asarray(a, float), np.asarray(b, float)), _mean_difference, vectorized=True,
        axis=-1, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_interval(scores: Sequence[float],
                  confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap interval of one group's mean, as seaborn draws its error bars (the
    authors' Figure 2): None with one score; equal scores give the point itself."""
    values = np.asarray(scores, float)
    if len(values) < 2:
        return None
    if np.all(values == values[0]):  # every resample is the same: scipy warns, the answer is known
        return float(values[0]), float(values[0])
    from scipy import stats as scipy_stats

    result = scipy_stats.bootstrap(
        (values,), np.mean, vectorized=True, axis=-1, confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """The pooled sample standard deviation of two groups (n - 1 each)."""
    dof = len(a) + len(b) - 2
    return math.sqrt(((len(a) - 1) * statistics.variance(a)
                      + (len(b) - 1) * statistics.variance(b)) / dof)


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cohen's d over the pooled sd, times the small-sample correction 1 - 3 / (4 dof - 1)."""
    sd = pooled_sd(a, b)
    if sd == 0:
        return None
    dof = len(a) + len(b) - 2
    return (statistics.fmean(a) - statistics.fmean(b)) / sd * (1 - 3 / (4 * dof - 1))


def tost(a: Sequence[float], b: Sequence[float], margin: float, test: str = "student") -> float:
    """p value of the two one-sided tests that mean(a) - mean(b) lies within +-margin."""
    from statsmodels.stats.weightstats import ttost_ind

    usevar = "unequal" if test == "welch" else "pooled"
    p, _, _ = ttost_ind(np.asarray(a, float), np.asarray(b, float), -margin, margin,
                        usevar=usevar)
    return float(p)


def minimum_detectable_effect(sd: float, n_a: int, n_b: int, alpha: float,
                              power: float = POWER) -> float:
    """The smallest difference (in the unit of ``sd``) a two-sided t-test at ``alpha`` detects
    with ``power`` given n_a and n_b seeds: statsmodels' effect size times the pooled sd."""
    from statsmodels.stats.power import TTestIndPower

    effect = TTestIndPower().solve_power(effect_size=None, nobs1=n_a, alpha=alpha, power=power,
                                         ratio=n_b / n_a, alternative="two-sided")
    return float(effect) * sd


def adjust(p_values: Sequence[float | None], correction: str) -> list[float | None]:
    """The p values corrected over the family of those present (None stays None)."""
    if correction == "none":
        return list(p_values)
    present = [p for p in p_values if p is not None]
    if not present:
        return list(p_values)
    from statsmodels.stats.multitest import multipletests

    corrected = iter(multipletests(present, method=_MULTITEST_METHOD[correction])[1])
    return [None if p is None else float(next(corrected)) for p in p_values]


def wilson_interval(correct: int, total: int,
                    confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of correct / total; None without any trial."""
    if not total:
        return None
    from scipy import stats as scipy_stats

    ci = scipy_stats.binomtest(correct, total).proportion_ci(confidence, "wilson")
    return float(ci.low), float(ci.high)


def require_aso() -> None:
    """One clear error before any work when deepsig is not installed."""
    try:
        import deepsig  # noqa: F401
    except ImportError:
        raise MtlvsiftError(ASO_INSTALL) from None


def aso_violation(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                  comparisons: int = 1) -> float:
    """deepsig's eps_min for "a is better than b": the upper bound of the violation ratio of
    a's stochastic dominance over b (0: a always better; 1: never). ``comparisons`` > 1 makes
    deepsig apply its Bonferroni correction. Seeded, so a report is reproducible."""
    require_aso()
    from deepsig import aso

    with warnings.catch_warnings():
        # deepsig warns on any confidence below 0.95; the report's is 1 - alpha (0.9 by default).
        warnings.filterwarnings("ignore", message=".*confidence_level.*", category=UserWarning)
        return float(aso(list(map(float, a)), list(map(float, b)), confidence_level=confidence,
                         num_comparisons=comparisons, show_progress=False, seed=BOOTSTRAP_SEED))
