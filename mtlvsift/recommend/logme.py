"""LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021): the log marginal evidence, per example, of a Bayesian linear model from features to
labels, with its prior precision alpha and noise precision beta set by MacKay's fixed point.

The algorithm of the authors' MIT reference code (thuml/LogME, ``LogME.py``): the eigen-
decomposition of F^T F once, then per label column y at most 11 fixed-point steps from
alpha = beta = 1, stopped when alpha/beta moves by less than 1%, with the same epsilon 1e-5 in
the denominators; classification averages over the one-hot columns of the classes, regression
over the target's columns. numpy only.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-5  # the reference code's guard in the alpha and beta denominators
MAX_STEPS = 11  # the reference: "should converge after at most 10 steps"
TOLERANCE = 0.01  # relative change of alpha / beta that ends the iteration


def logme(features: np.ndarray, labels: np.ndarray, regression: bool = False) -> float:
    """LogME of ``features`` (N x D) for ``labels``: N class indices 0..C-1, or for a regression
    N values (or N x K columns). Higher: the features predict the labels better."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"features must be a non-empty N x D array, got shape {f.shape}")
    columns = _label_columns(np.asarray(labels), regression, len(f))
    eigenvalues, eigenvectors = np.linalg.eigh(f.T @ f)
    eigenvalues = np.clip(eigenvalues, 0.0, None)  # F^T F is PSD; rounding may dip below 0
    return float(np.mean([_evidence(f, y, eigenvalues, eigenvectors) for y in columns.T]))


def _label_columns(labels: np.ndarray, regression: bool, n: int) -> np.ndarray:
    """N x K targets: the regression's columns, or the one-hot columns of the classes."""
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} feature rows")
    if regression:
        return labels.astype(np.float64).reshape(n, -1)
    classes = labels.astype(np.int64)
    if classes.min() < 0:
        raise ValueError("class labels must be indices 0..C-1")
    return (classes[:, None] == np.arange(classes.max() + 1)[None, :]).astype(np.float64)


def _evidence(f: np.ndarray, y: np.ndarray, s: np.ndarray, v: np.ndarray) -> float:
    """The reference's ``each_evidence``: the fixed point for one column, its evidence / N."""
    n, d = f.shape
    alpha, beta = 1.0, 1.0
    projected = v.T @ (f.T @ y)  # V^T F^T y
    for _ in range(MAX_STEPS):
        ratio = alpha / beta
        gamma = float((beta * s / (alpha + beta * s)).sum())
        m = v @ (projected * beta / (alpha + beta * s))  # posterior mean (alpha I + beta F^T F)^-1 beta F^T y
        alpha_de = float(m @ m)
        beta_de = float(((y - f @ m) ** 2).sum())
        alpha = gamma / (alpha_de + EPSILON)
        beta = (n - gamma) / (beta_de + EPSILON)
        if abs(alpha / beta - ratio) / ratio < TOLERANCE:
            break
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta)
                - 0.5 * np.sum(np.log(alpha + beta * s))
                - beta / 2 * (beta_de + EPSILON) - alpha / 2 * (alpha_de + EPSILON)
                - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)
