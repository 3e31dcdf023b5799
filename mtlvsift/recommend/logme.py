"""LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021): the log marginal evidence, per example, of a Bayesian linear model from features to
labels, with its prior precision alpha and noise precision beta set by a fixed point.

The algorithm is the one the authors' MIT reference code (thuml/LogME, ``LogME.py``) runs by
default, ``LogME.fit`` = ``_fit_fixed_point`` (You et al., "Ranking and Tuning Pre-trained Models",
arXiv 2110.10545): one thin SVD of F, then per label column at most 11 steps of the fixed point in
t = alpha / beta from alpha = beta = 1, stopped when t moves by at most 0.1%, with the reference's
epsilon 1e-5 in the denominators, with one fix its authors accepted (the log-determinant over all
D dimensions, see ``_evidence``). Classification averages over the one-hot columns of the classes,
regression over the target's columns. numpy only; tests/test_logme.py pins the reference's numbers.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-5  # the reference code's guard in the alpha and beta denominators
MAX_STEPS = 11  # the reference: "should converge after at most 10 steps"
TOLERANCE = 1e-3  # relative change of t = alpha / beta that ends the iteration
RANK_TOLERANCE = 1e-10  # singular values at or below this count as zero (the reference's rank)


def logme(features: np.ndarray, labels: np.ndarray, regression: bool = False) -> float:
    """LogME of ``features`` (N x D) for ``labels``: N class indices 0..C-1, or for a regression
    N values (or N x K columns). Higher: the features predict the labels better."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"features must be a non-empty N x D array, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features hold NaN or infinite values")
    columns = _label_columns(np.asarray(labels), regression, len(f))
    u, singular = _thin_svd(f)
    n, d = f.shape
    return float(np.mean([_evidence(u.T @ y, y @ y, singular ** 2, n, d) for y in columns.T]))


def _label_columns(labels: np.ndarray, regression: bool, n: int) -> np.ndarray:
    """N x K targets: the regression's columns, or the one-hot columns of the classes."""
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} feature rows")
    if regression:
        values = labels.astype(np.float64).reshape(n, -1)
        if not np.isfinite(values).all():
            raise ValueError("regression labels hold NaN or infinite values")
        return values
    classes = labels.astype(np.int64)
    if classes.min() < 0:
        raise ValueError("class labels must be indices 0..C-1")
    return (classes[:, None] == np.arange(classes.max() + 1)[None, :]).astype(np.float64)


def _thin_svd(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U (N x k) and the k non-zero singular values of F. With more rows than columns, from the
    D x D eigenproblem of F^T F (the reference's ``truncated_svd``: cheap for N >> D)."""
    n, d = f.shape
    if n <= d:
        u, singular, _ = np.linalg.svd(f, full_matrices=False)
        keep = singular > RANK_TOLERANCE
        return u[:, keep], singular[keep]
    eigenvalues, v = np.linalg.eigh(f.T @ f)
    singular = np.sqrt(np.clip(eigenvalues, 0.0, None))  # F^T F is PSD; rounding may dip below 0
    keep = singular > RANK_TOLERANCE  # before dividing by them
    return (f @ v[:, keep]) / singular[keep], singular[keep]


def _evidence(x: np.ndarray, y_norm2: float, sigma: np.ndarray, n: int, d: int) -> float:
    """One column's evidence / N from its projection x = U^T y, ||y||^2 and sigma = s^2."""
    x2 = x ** 2
    residual_outside = y_norm2 - x2.sum()  # the part of y outside F's column space
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_STEPS):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())  # effective number of parameters
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())  # ||m||^2 of the posterior mean
        res2 = float((x2 / (1 + sigma / t) ** 2).sum() + residual_outside)  # ||F m - y||^2
        alpha = gamma / (m2 + EPSILON)
        beta = (n - gamma) / (res2 + EPSILON)
        if abs(alpha / beta - t) / t <= TOLERANCE:
            break
    # As the reference: the new alpha, beta with the m2, res2 of the last step's t.
    # log|A| over all D eigenvalues alpha + beta sigma_i, those of F's null directions (sigma_i
    # = 0) included: the fix the reference's authors accepted (thuml/LogME issue 23, PR 24). Its
    # released code sums only the k kept ones, which overstates LogME by (D - k) log(alpha) / 2N
    # when N < D or F is rank-deficient, and lets rounding decide a null direction's k.
    log_det = np.sum(np.log(alpha + beta * sigma)) + (d - len(sigma)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)
