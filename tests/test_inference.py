"""The per-cell statistics (mtlvsift/report/inference.py) on fixed numbers, against scipy,
statsmodels and the textbook formulas."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestIndPower

from mtlvsift.report.inference import adjust, bootstrap_interval, degenerate_reason, hedges_g, \
    minimum_detectable_effect, pooled_sd, t_test, tost, wilson_interval

P_VALUES = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
MTL = [84.1, 85.0, 83.7, 84.9, 85.3]  # points, 5 seeds
STILTS = [82.9, 83.8, 84.0, 82.5, 83.1]


def test_holm_adjusted_p_values_of_ten():
    # By hand: sorted p times (m - rank + 1), then the running maximum.
    assert adjust(P_VALUES, "holm") == pytest.approx(
        [0.01, 0.072, 0.312, 0.312, 0.312, 0.312, 0.312, 0.615, 0.615, 0.615])


def test_benjamini_hochberg_adjusted_p_values_of_ten_match_scipy():
    expected = [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.074 * 10 / 7, 0.216, 0.216, 0.216]
    assert adjust(P_VALUES, "bh") == pytest.approx(expected)
    assert adjust(P_VALUES, "bh") == pytest.approx(list(scipy_stats.false_discovery_control(P_VALUES)))


def test_a_cell_without_p_stays_out_of_the_family():
    assert adjust([0.01, None, 0.04], "holm") == pytest.approx([0.02, None, 0.04])
    assert adjust([0.01, None], "none") == [0.01, None]


def test_student_p_and_interval_of_a_5_vs_5_cell():
    t, p, (low, high) = t_test(MTL, STILTS, "student")
    diff = statistics.fmean(MTL) - statistics.fmean(STILTS)
    se = pooled_sd(MTL, STILTS) * math.sqrt(1 / 5 + 1 / 5)
    assert t == pytest.approx(diff / se)
    assert p == pytest.approx(2 * scipy_stats.t.sf(diff / se, 8))
    assert p == pytest.approx(0.011468, abs=1e-6)
    half = scipy_stats.t.ppf(0.95, 8) * se
    assert (low, high) == pytest.approx((diff - half, diff + half))


def test_welch_p_and_interval_of_a_5_vs_5_cell():
    t, p, (low, high) = t_test(MTL, STILTS, "welch")
    va, vb = statistics.variance(MTL) / 5, statistics.variance(STILTS) / 5
    dof = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)  # Welch-Satterthwaite
    diff = statistics.fmean(MTL) - statistics.fmean(STILTS)
    assert p == pytest.approx(2 * scipy_stats.t.sf(diff / math.sqrt(va + vb), dof))
    assert p == pytest.approx(0.011540, abs=1e-6)
    half = scipy_stats.t.ppf(0.95, dof) * math.sqrt(va + vb)
    assert (low, high) == pytest.approx((diff - half, diff + half))


def test_hedges_g():
    sd = math.sqrt((4 * statistics.variance(MTL) + 4 * statistics.variance(STILTS)) / 8)
    d = (statistics.fmean(MTL) - statistics.fmean(STILTS)) / sd
    assert hedges_g(MTL, STILTS) == pytest.approx(d * (1 - 3 / (4 * 10 - 9)))
    assert hedges_g(MTL, STILTS) == pytest.approx(1.86424, abs=1e-5)
    assert hedges_g([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) is None


def test_bootstrap_interval_is_seeded_and_brackets_the_difference():
    low, high = bootstrap_interval(MTL, STILTS)
    assert (low, high) == bootstrap_interval(MTL, STILTS)
    assert low < statistics.fmean(MTL) - statistics.fmean(STILTS) < high
    assert (low, high) == pytest.approx((0.72, 1.92), abs=0.05)


def test_wilson_interval_of_49_of_53():
    low, high = wilson_interval(49, 53)
    assert low == pytest.approx(0.8422, abs=1e-3) and high == pytest.approx(0.9657, abs=1e-3)
    assert wilson_interval(0, 0) is None


def test_tost_passes_for_close_tight_seeds_and_fails_for_a_clear_difference():
    close_a = [84.0, 84.1, 83.9, 84.05, 83.95]
    close_b = [84.02, 83.98, 84.1, 83.9, 84.0]
    assert tost(close_a, close_b, margin=0.5) < 0.1
    assert tost(MTL, STILTS, margin=0.5) > 0.1


@pytest.mark.parametrize("seeds, expected", [(5, 1.72457), (10, 1.15627)])
def test_minimum_detectable_effect_at_80_percent_power(seeds, expected):
    mde = minimum_detectable_effect(1.0, seeds, seeds, alpha=0.1)
    assert mde == pytest.approx(expected, abs=1e-4)
    power = TTestIndPower().power(effect_size=mde, nobs1=seeds, alpha=0.1, ratio=1.0)
    assert power == pytest.approx(0.8, abs=1e-6)
    assert minimum_detectable_effect(2.0, seeds, seeds, alpha=0.1) == pytest.approx(2 * mde)


def test_degenerate_cells_have_a_reason():
    # The WNLI case: two MTL seeds both at 46.48 and two equal STILTs seeds gave p = 0.
    assert "fewer than 3 seeds" in degenerate_reason([46.48, 46.48], [56.34, 56.34])
    assert "no variance" in degenerate_reason([46.48] * 3, [56.34] * 3)
    assert degenerate_reason([46.48] * 3, [56.34, 56.0, 56.2]) is None
    assert degenerate_reason(MTL, STILTS) is None
