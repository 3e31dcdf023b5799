"""LogME against an independent implementation of the same evidence (You et al., ICML 2021):
plain inverses and log-determinants where mtlvsift.recommend.logme uses one eigendecomposition,
the same fixed-point rule of the reference code (thuml/LogME), on fixed random inputs."""

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


def test_three_classes_match_the_inverse_form():
    f, labels = three_classes()
    ours, reference = logme(f, labels), logme_by_inverse(f, labels)
    assert ours == pytest.approx(reference, rel=1e-6)
    assert ours == pytest.approx(-0.168462, abs=1e-6)  # pinned: a change of the algorithm shows


def test_regression_matches_the_inverse_form():
    f, y = regression_data()
    ours = logme(f, y, regression=True)
    assert ours == pytest.approx(logme_by_inverse(f, y, regression=True), rel=1e-6)
    f2, y2 = regression_data(columns=3)
    assert logme(f2, y2, regression=True) == pytest.approx(
        logme_by_inverse(f2, y2, regression=True), rel=1e-6)


def test_more_dimensions_than_examples_match_too():
    f, labels = three_classes(seed=3, n=20, d=40)
    assert logme(f, labels) == pytest.approx(logme_by_inverse(f, labels), rel=1e-6)


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
