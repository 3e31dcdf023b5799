"""What the figures draw (issue 20): Figure 1's cell styles by verdict, Figure 2's bootstrap
intervals with the two methods side by side and n stated; checked as values, not pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import bootstrap

from mtlvsift.report import figures, inference
from mtlvsift.report.stats import analyze
from mtlvsift.run_index import discover
from mtlvsift.names import DEFAULT_MODEL
from synthetic import size_experiment_tree, write_record

# Target RTE; one support per verdict (MTL scores, STILTs scores).
PLANTED = {
    "mrpc": ([0.80, 0.81, 0.82, 0.80, 0.81], [0.70, 0.71, 0.70, 0.72, 0.71]),  # decided, MTL
    "sst2": ([0.7000, 0.7002, 0.6999, 0.7001, 0.7000],
             [0.7001, 0.7000, 0.7002, 0.6999, 0.7001]),  # equivalent within 0.5 points
    "cola": ([0.60, 0.80, 0.70], [0.65, 0.75, 0.72]),  # open: noisy
    "stsb": ([0.70, 0.72], [0.60, 0.61]),  # two seeds: no test
    "qnli": ([0.700, 0.712, 0.705, 0.709, 0.702],
             [0.696, 0.701, 0.699, 0.703, 0.697]),  # p near 0.04: open after Holm
}


def _analysis(root: Path, correction: str):
    for support, (mtl, stilts) in PLANTED.items():
        for seed, score in enumerate(mtl):
            write_record(root, "mtl", "rte", [support], seed, score)
        for seed, score in enumerate(stilts):
            write_record(root, "stilts", "rte", [support], seed, score)
    return analyze(discover(root).records, DEFAULT_MODEL, correction=correction)


def test_each_verdict_has_its_own_style(tmp_path):
    analysis = _analysis(tmp_path, "none")
    style = {s: figures.cell_style(analysis.cell("rte", s), False, "none", 0.1) for s in PLANTED}
    assert style["mrpc"] == figures.CellStyle(figures.MTL_COLOR, "+10.0", bold=True)
    assert style["sst2"] == figures.CellStyle(figures.EQUIVALENT_COLOR, "-0.0", note="equivalent")
    assert style["cola"] == figures.CellStyle(figures.OPEN_COLOR, "-0.7", note="open", hatched=True)
    assert style["stsb"] == figures.CellStyle(figures.OPEN_COLOR, "+10.5", note="no test",
                                              hatched=True)
    assert style["qnli"].fill == figures.MTL_COLOR  # uncorrected: decided
    assert figures.cell_style(None, True, "none", 0.1).text == "—"
    assert figures.cell_style(analysis.cell("rte", "wnli"), False, "none", 0.1) == \
        figures.CellStyle(figures.EMPTY_COLOR)


def test_a_cell_significant_only_before_the_correction_is_open_and_marked(tmp_path):
    analysis = _analysis(tmp_path, "holm")
    cell = analysis.cell("rte", "qnli")
    assert cell.stats.p < 0.1 <= cell.stats.p_holm  # the planted case is what it claims
    style = figures.cell_style(cell, False, "holm", 0.1)
    assert style.fill == figures.OPEN_COLOR and style.hatched
    assert style.text == f"{cell.diff:+.1f}{figures.UNCORRECTED_MARK}"
    assert figures.cell_style(analysis.cell("rte", "mrpc"), False, "holm", 0.1).bold
    cola = figures.cell_style(analysis.cell("rte", "cola"), False, "holm", 0.1)
    assert not cola.text.endswith(figures.UNCORRECTED_MARK)  # p above alpha either way


def test_figure2_points_are_bootstrap_intervals_side_by_side(tmp_path):
    size_experiment_tree(tmp_path, fractions=(0.05,), seeds=range(4))
    analysis = analyze(discover(tmp_path).records, DEFAULT_MODEL)
    panel = [g for g in analysis.size_groups if g.support_ratio is not None]
    mtl, stilts = figures.size_series(panel)
    assert (mtl.method, stilts.method) == ("mtl", "stilts")
    assert mtl.ratios == stilts.ratios == sorted(mtl.ratios)
    for k, ratio in enumerate(mtl.ratios):
        assert mtl.x[k] < ratio < stilts.x[k]  # never drawn on top of each other
        assert stilts.x[k] / mtl.x[k] == pytest.approx(figures.SIDE_BY_SIDE ** 2)
    group = next(g for g in panel if g.method == "stilts" and g.support_ratio == stilts.ratios[0])
    points = np.array(group.scores) * 100
    expected = bootstrap((points,), np.mean, confidence_level=0.9, method="percentile",
                         n_resamples=inference.BOOTSTRAP_RESAMPLES,
                         rng=np.random.default_rng(inference.BOOTSTRAP_SEED)).confidence_interval
    assert stilts.means[0] - stilts.lower[0] == pytest.approx(expected.low)
    assert stilts.means[0] + stilts.upper[0] == pytest.approx(expected.high)
    assert mtl.seeds == stilts.seeds == [4] * len(mtl.ratios)
    assert figures.seeds_label([4, 4]) == "n = 4" and figures.seeds_label([2, 5]) == "n = 2–5"


def test_a_mean_interval_needs_two_seeds_and_equal_seeds_give_the_point():
    assert inference.mean_interval([70.0]) is None
    assert inference.mean_interval([70.0, 70.0, 70.0]) == (70.0, 70.0)
    low, high = inference.mean_interval([60.0, 70.0, 80.0, 65.0])
    assert 60.0 <= low < 68.75 < high <= 80.0
