"""LogME (You et al., ICML 2021) against the numbers of the authors' reference code (thuml/LogME)
on fixed random inputs, and against an independent implementation of the same evidence by plain
inverses and log-determinants."""

import numpy as np
import pytest

from mtlvsift.recommend import logme


def evidence_by_inverse(f: np.ndarray, y: np.ndarray) -> float:
    """One column's LogME from the paper's equations: A = alpha I + beta F^T F,
    m = beta A^-1 F^T y, gamma = D - alpha tr(A^-1), log|A| by slogdet."""
    n, d = f.shape
    alpha, beta, eps = 1.0, 1.0, 1e-5
    for _ in range(11):
        ratio = alpha / beta
        a_inv = np.linalg.inv(alpha * np.eye(d) + beta * f.T @ f)
        m = beta * a_inv @ f.T @ y
        gamma = d - alpha * np.trace(a_inv)
        mm, residual = m @ m + eps, np.sum((f @ m - y) ** 2) + eps
        alpha, beta = gamma / mm, (n - gamma) / residual
        if abs(alpha / beta - ratio) / ratio < 0.01:
            break
    log_det = np.linalg.slogdet(alpha * np.eye(d) + beta * f.T @ f)[1]
    total = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
             - beta / 2 * residual - alpha / 2 * mm - log_det / 2)
    return total / n


def logme_by_inverse(f, labels, regression=False):
    if regression:
        columns = labels.reshape(len(labels), -1).T
    else:
        columns = [(labels == c).astype(float) for c in range(labels.max() + 1)]
    return float(np.mean([evidence_by_inverse(f, y) for y in columns]))


def three_classes(seed=0, n=120, d=16, signal=1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centres = rng.normal(size=(3, d))
    return signal * centres[labels] + rng.normal(size=(n, d)), labels


def regression_data(seed=1, n=150, d=12, columns=1):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d))
    y = f @ rng.normal(size=(d, columns)) + 0.5 * rng.normal(size=(n, columns))
    return f, y.squeeze(-1) if columns == 1 else y


# The reference's numbers: thuml/LogME's LogME.py at commit 3a0895084badc924dce3eb049580100bf7258f42,
# ``LogME(regression=...).fit(f, y)`` (its default, ``_fit_fixed_point``) on exactly these inputs,
# run with numba's ``@njit`` removed (numba is not installed here). For N < D, the reference with
# the fix its authors accepted (issue 23, PR 24: the log-determinant over all D eigenvalues; the
# released code gives 2.981106996773501 there). The reference code itself is not part of this project.
REFERENCE = {
    "three_classes": -0.16844902548013393,
    "wide_three_classes": -0.14491006042005733,  # N = 20 < D = 40: the reference's full thin SVD
    "regression": -0.9770679177810327,
    "regression_three_columns": -0.962911644287959,
    "rank_deficient": -1.0719011653519557,  # 3 of 11 columns repeated: rank 8
    "constant_columns": 0.0886484858099051,  # two constant columns, as MiniLM's first token has
}


def rank_deficient():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(300, 8))
    return np.hstack([f, f[:, :3]]), rng.integers(0, 2, 300)


def constant_columns():
    f, labels = three_classes(seed=7, n=200, d=24)
    f[:, 5], f[:, 17] = 0.75, -1.25
    return f, labels


def test_classification_matches_the_reference_code():
    assert logme(*three_classes()) == pytest.approx(REFERENCE["three_classes"], rel=1e-6)
    assert logme(*three_classes(seed=3, n=20, d=40)) == pytest.approx(
        REFERENCE["wide_three_classes"], rel=1e-6)
    assert logme(*rank_deficient()) == pytest.approx(REFERENCE["rank_deficient"], rel=1e-6)
    assert logme(*constant_columns()) == pytest.approx(REFERENCE["constant_columns"], rel=1e-6)


def test_rounding_does_not_decide_a_null_direction():
    """A null direction's eigenvalue of F^T F is rounding noise of either sign. Before the
    log-determinant ran over all D dimensions, noise of 1e-9 moved this LogME between 0.0886 and
    0.1030 (a direction dropped or kept); MiniLM's features on RTE jumped by 1.9e-3 the same way."""
    f, labels = constant_columns()
    rng = np.random.default_rng(0)
    scores = [logme(f + rng.normal(size=f.shape) * 1e-9, labels) for _ in range(20)]
    assert np.ptp(scores) < 1e-8


def test_regression_matches_the_reference_code():
    assert logme(*regression_data(), regression=True) == pytest.approx(
        REFERENCE["regression"], rel=1e-6)
    assert logme(*regression_data(columns=3), regression=True) == pytest.approx(
        REFERENCE["regression_three_columns"], rel=1e-6)


def test_the_fixed_point_lands_near_the_evidence_by_inverses():
    """An independent check of the evidence's algebra: with N > D the fixed point in t reaches
    the same evidence as the paper's equations with plain inverses (their stopping rules differ,
    so the two agree to 1e-3, not to rounding)."""
    f, labels = three_classes()
    assert logme(f, labels) == pytest.approx(logme_by_inverse(f, labels), rel=1e-3)
    f, y = regression_data(columns=3)
    assert logme(f, y, regression=True) == pytest.approx(
        logme_by_inverse(f, y, regression=True), rel=1e-3)
    f, labels = three_classes(seed=3, n=20, d=40)  # N < D: where the released code was off
    assert logme(f, labels) == pytest.approx(logme_by_inverse(f, labels), rel=3e-3)


def test_features_that_predict_the_labels_score_higher_than_noise():
    f, labels = three_classes(signal=3.0)
    noise = np.random.default_rng(5).normal(size=f.shape)
    assert logme(f, labels) > logme(noise, labels) + 0.05
    fr, y = regression_data()
    assert logme(fr, y, regression=True) > logme(np.random.default_rng(6).normal(size=fr.shape), y, regression=True) + 0.5


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        logme(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError):
        logme(np.zeros((0, 2)), np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        logme(np.full((3, 2), np.nan), np.array([0, 1, 0]))
