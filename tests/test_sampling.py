"""Task probabilities and largest-remainder quotas (standard protocol), with exact expected
numbers. Epoch schedules: test_schedules.py; the original protocol's quotas and epochs:
test_protocol.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import BATCHINGS, DYNAMIC_RULES, SAMPLINGS
from mtlvsift.train.batches.probabilities import (check_choice, dynamic_probabilities, size_probabilities,
                                                 task_probabilities, uniform_probabilities)
from mtlvsift.train.batches.sampling import epoch_batch_sizes, epoch_schedule, largest_remainder_quotas

GLUE_SIZES = (392702, 363846, 104743, 67349, 8551, 5749, 3668, 2490, 635)


# --------------------------------------------------------------------------- probabilities


def test_uniform_and_size_probabilities():
    np.testing.assert_allclose(uniform_probabilities((1, 3)), [0.5, 0.5])
    np.testing.assert_allclose(uniform_probabilities((7, 1, 2, 9)), [0.25] * 4)
    np.testing.assert_allclose(size_probabilities((1, 3)), [0.25, 0.75])
    np.testing.assert_allclose(size_probabilities((2, 3, 5)), [0.2, 0.3, 0.5])


def test_softmax_matches_the_paper_code_case():
    p = dynamic_probabilities([0.9, 0.8, 1.0, 0.7], [0.9, 0.8, 0.0, 0.7])  # gaps 0, 0, 1, 0
    np.testing.assert_allclose(np.round(p, 3), [0.175, 0.175, 0.475, 0.175])
    np.testing.assert_allclose(p[2], np.e / (np.e + 3))


def test_softmax_is_numerically_stable():
    p = dynamic_probabilities([1000.0, 0.0], [0.0, 0.0])
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [1.0, 0.0], atol=1e-12)


def test_normalized_gaps():
    p = dynamic_probabilities([0.6, 0.5, 0.9, 0.4], [0.5, 0.7, 0.6, 0.4], rule="normalized")
    np.testing.assert_allclose(p, [0.25, 0.0, 0.75, 0.0])  # gaps 0.1, -0.2, 0.3, 0
    # No task lags its single-task score: uniform.
    np.testing.assert_allclose(dynamic_probabilities([0.5, 0.5], [0.6, 0.5], rule="normalized"), [0.5, 0.5])


def test_dynamic_uses_size_first_then_gaps():
    sizes = (1, 3)
    np.testing.assert_allclose(task_probabilities("dynamic", sizes, 0, [0.9, 0.9], [0.1, 0.9]), [0.25, 0.75])
    np.testing.assert_allclose(task_probabilities("dynamic", sizes, 4, [0.9, 0.9], None), [0.25, 0.75])
    later = task_probabilities("dynamic", sizes, 1, [1.0, 0.5], [0.0, 0.5])  # gaps 1, 0
    np.testing.assert_allclose(later, [np.e / (np.e + 1), 1 / (np.e + 1)])
    norm = task_probabilities("dynamic", sizes, 1, [1.0, 0.5], [0.5, 0.25], rule="normalized")
    np.testing.assert_allclose(norm, [2 / 3, 1 / 3])
    np.testing.assert_allclose(task_probabilities("uniform", sizes, 3), [0.5, 0.5])
    np.testing.assert_allclose(task_probabilities("size", sizes, 3, [1, 1], [0, 0]), [0.25, 0.75])


def test_dynamic_needs_single_scores_after_the_first_epoch():
    with pytest.raises(ValueError, match="single-task"):
        task_probabilities("dynamic", (1, 3), 1, None, [0.5, 0.5])


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "call, choices",
    [
        (lambda: task_probabilities("annealed", (1, 2), 0), SAMPLINGS),
        (lambda: task_probabilities("size", (1, 2), 0, rule="linear"), DYNAMIC_RULES),
        (lambda: dynamic_probabilities([1.0], [0.0], rule="linear"), DYNAMIC_RULES),
        (lambda: epoch_schedule((3, 4), [0.5, 0.5], 2, 0, 0, batching="mixed"), BATCHINGS),
    ],
)
def test_unknown_names_list_the_choices(call, choices):
    with pytest.raises(MtlvsiftError) as info:
        call()
    assert ", ".join(choices) in info.value.message


def test_check_choice_is_case_insensitive_and_canonical():
    assert check_choice("sampling", " Size ", SAMPLINGS) == "size"
    with pytest.raises(MtlvsiftError, match="Unknown batching 'x'; choose one of: heterogeneous, homogeneous"):
        check_choice("batching", "x", BATCHINGS)


def test_user_errors():
    with pytest.raises(MtlvsiftError, match="batch size"):
        epoch_batch_sizes(10, 0)
    with pytest.raises(MtlvsiftError, match="at least one training example"):
        epoch_schedule((3, 0), [0.5, 0.5], 2, 0, 0)
    with pytest.raises(MtlvsiftError, match="seed"):
        epoch_schedule((3, 4), [0.5, 0.5], 2, -1, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        largest_remainder_quotas([0.5, 0.2], 4)


# --------------------------------------------------------------------------- quotas


@pytest.mark.parametrize(
    "p, batch_size, expected",
    [
        ((0.5, 0.3, 0.2), 7, (4, 2, 1)),  # 3.5, 2.1, 1.4: floors 3, 2, 1; the 1 left goes to .5
        ((1 / 3, 1 / 3, 1 / 3), 4, (2, 1, 1)),  # tie broken by index
        ((1 / 3, 1 / 3, 1 / 3), 5, (2, 2, 1)),
        ((0.001, 0.999), 128, (0, 128)),  # 0.128, 127.872: no minimum of one row
        ((0.05, 0.05, 0.9), 10, (1, 0, 9)),  # 0.5, 0.5, 9: the tie of .5 and .5 goes to task 0
        ((0.1, 0.4, 0.1, 0.4), 2, (0, 1, 0, 1)),  # B < K: the B most probable
        ((0.25, 0.25, 0.25, 0.25), 3, (1, 1, 1, 0)),
        ((0.6, 0.4), 1, (1, 0)),
        ((1.0,), 5, (5,)),
        ((0.5, 0.5), 2, (1, 1)),  # the batches of the pinned (3, 2) schedule below
        ((0.5, 0.5), 1, (1, 0)),  # its last batch: B < K, tie broken by index
        ((0.5, 0.3, 0.2), 4, (2, 1, 1)),  # 2, 1.2, 0.8: floors 2, 1, 0; the 1 left goes to .8
        ((0.5, 0.3, 0.2), 1, (1, 0, 0)),
        ((0.2, 0.3, 0.5), 7, (1, 2, 4)),  # 1.4, 2.1, 3.5: floors 1, 2, 3; the 1 left goes to .5
        ((0.45, 0.45, 0.1), 4, (2, 2, 0)),  # 1.8, 1.8, .4: floors 1, 1, 0; the 2 left go to .8, .8
        ((0.35, 0.35, 0.3), 3, (1, 1, 1)),  # 1.05, 1.05, .9 -> floors 1, 1, 0; the 1 left to .9
        # 1.4, 4.2, 22.4: the fractions .4 and .4 differ by float noise (1e-16 vs 2e-15) and still
        # tie, so the 1 left goes to the lower index (task 0), not to task 2.
        ((0.05, 0.15, 0.8), 28, (2, 4, 22)),
        ((0.05, 0.3, 0.65), 28, (2, 8, 18)),  # 1.4, 8.4, 18.2: noisy tie of .4 and .4 -> task 0
    ],
)
def test_quotas_hand_computed(p, batch_size, expected):
    quotas = largest_remainder_quotas(p, batch_size)
    assert quotas.dtype == np.int64
    assert quotas.tolist() == list(expected)


def test_quotas_glue_sizes():
    # ideal 52.92, 49.03, 14.12, 9.08, 1.15, .78, .49, .34, .09; floors sum 125, the 3 left go to
    # tasks 0, 5, 6. RTE and WNLI get no row: the standard protocol has no minimum.
    quotas = largest_remainder_quotas(size_probabilities(GLUE_SIZES), 128)
    assert quotas.tolist() == [53, 49, 14, 9, 1, 1, 1, 0, 0]


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=12).filter(lambda w: sum(w) > 0),
    batch_size=st.integers(1, 600),
)
def test_quotas_properties(weights, batch_size):
    p = np.asarray(weights) / np.sum(weights)
    quotas = largest_remainder_quotas(p, batch_size)
    k = len(p)
    assert quotas.sum() == batch_size
    assert np.all(quotas >= 0)
    assert np.all(np.abs(quotas - p * batch_size) < 1 + 1e-9)  # the floor or the ceiling
    if batch_size < k:  # not every task fits: the more probable tasks get the rows
        chosen = np.flatnonzero(quotas)
        assert p[chosen].min() >= p[quotas == 0].max()
    # Determinism.
    assert largest_remainder_quotas(p, batch_size).tolist() == quotas.tolist()
