"""compare.py's verdicts (issue 20): --test, --correction, --equivalence-margin, the per-cell
intervals, effect sizes and power in summary.json and cells.csv, the degenerate-cell rule, and
the heuristic's accuracy under each correction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.stats import binomtest, ttest_ind
from statsmodels.stats.multitest import multipletests

from helpers import load_script
from synthetic import paper_like_tree, write_record

main = load_script("compare").main
CELL_KEYS = {"diff", "diff_ci_t", "diff_ci_boot", "hedges_g", "p", "p_holm", "p_bh", "mde",
             "verdict", "mtl_scores", "stilts_scores"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verdicts") / "outputs"
    paper_like_tree(root, tasks=["qnli", "sst2", "mrpc", "rte"])
    return root


def _summary(root: Path, *args) -> dict:
    result = run("--outputs", root, "--report-dir", root / "report", *args)
    assert result.exit_code == 0, result.output
    return json.loads((root / "report" / "summary.json").read_text())


def test_welch_and_holm_give_corrected_p_and_verdicts(tree):
    summary = _summary(tree, "--test", "welch", "--correction", "holm")
    assert (summary["test"], summary["correction"]) == ("welch", "holm")
    cells = [c for c in summary["cells"] if c["p"] is not None]
    assert len(cells) == 12 and CELL_KEYS <= set(cells[0])
    for c in cells:
        expected = ttest_ind(c["mtl_scores"], c["stilts_scores"], equal_var=False)
        assert c["p"] == pytest.approx(expected.pvalue, rel=1e-6)
        low, high = c["diff_ci_t"]
        assert low < c["diff"] < high and len(c["diff_ci_boot"]) == 2 and c["mde"] > 0
    holm = multipletests([c["p"] for c in cells], method="holm")[1]
    assert [c["p_holm"] for c in cells] == pytest.approx(list(holm))
    for c in cells:
        decided = c["p_holm"] < 0.1
        assert (c["verdict"] == "decided") == decided == c["significant"]
    by = summary["heuristic_by_correction"]
    assert set(by) == {"none", "holm", "bh"}
    assert summary["heuristic"]["total"] == by["holm"]["total"]
    ci = binomtest(by["holm"]["correct"], by["holm"]["total"]).proportion_ci(0.9, "wilson")
    assert by["holm"]["wilson_ci"] == pytest.approx([ci.low, ci.high])
    assert by["holm"]["total"] <= by["bh"]["total"] <= by["none"]["total"]
    report = (tree / "report" / "report.md").read_text()
    assert "Holm " in report and "Benjamini-Hochberg " in report and "survives" in report


def test_welch_is_an_alias_of_test_welch(tree):
    alias = _summary(tree, "--welch")
    assert alias["test"] == "welch"
    assert alias["cells"] == _summary(tree, "--test", "welch")["cells"]
    student = _summary(tree)
    assert (student["test"], student["correction"]) == ("student", "none")
    rows = list(csv.DictReader((tree / "report" / "cells.csv").open()))
    assert {"mtl_scores", "stilts_scores", "verdict", "p_bh", "mde"} <= set(rows[0])
    assert len(rows[0]["mtl_scores"].split()) == 5


def test_two_equal_seeds_get_no_p_and_stay_open(tmp_path):
    # The WNLI case: MTL 46.48 twice, STILTs 56.34 twice gave p = 0, "significant".
    for seed in range(2):
        write_record(tmp_path, "mtl", "wnli", ["rte"], seed, 0.4648)
        write_record(tmp_path, "stilts", "wnli", ["rte"], seed, 0.5634)
    summary = _summary(tmp_path)
    cell = next(c for c in summary["cells"] if c["target"] == "wnli")
    assert (cell["p"], cell["significant"], cell["verdict"]) == (None, False, "open")
    assert "fewer than 3 seeds" in cell["verdict_reason"]
    assert summary["heuristic_by_correction"]["none"]["total"] == 0
    report = " ".join((tmp_path / "report" / "report.md").read_text().split())
    assert "the paper's conclusion cannot be checked on this tree" in report
    assert "1 of 1 cells have fewer than 3 seeds of a method" in report
    result = run("recommend", "--target", "wnli", "--support", "rte", "--outputs", tmp_path)
    out = " ".join(result.stdout.split())
    assert "p = 0.0e+00" not in out and "p = n/a: open (fewer than 3 seeds" in out
    write_record(tmp_path, "mtl", "wnli", ["rte"], 2, 0.4648)
    write_record(tmp_path, "stilts", "wnli", ["rte"], 2, 0.5634)
    cell = next(c for c in _summary(tmp_path)["cells"] if c["target"] == "wnli")
    assert cell["p"] is None and "no variance" in cell["verdict_reason"]


def test_close_tight_seeds_are_equivalent_unless_the_margin_is_tiny(tmp_path):
    for seed, (mtl, stilts) in enumerate([(0.840, 0.8402), (0.841, 0.8398), (0.839, 0.841),
                                          (0.8405, 0.839), (0.8395, 0.840)]):
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, mtl)
        write_record(tmp_path, "stilts", "rte", ["mnli"], seed, stilts)

    def verdict(*args):
        summary = _summary(tmp_path, *args)
        return next(c for c in summary["cells"] if c["target"] == "rte")["verdict"]

    assert verdict() == "equivalent"
    assert verdict("--equivalence-margin", "0.01") == "open"


@pytest.fixture(scope="module")
def aso_tree(tmp_path_factory) -> Path:
    """Three cells: MTL clearly ahead, STILTs clearly ahead, and a toss-up."""
    root = tmp_path_factory.mktemp("aso") / "outputs"
    planted = {"mrpc": ([0.80, 0.81, 0.82, 0.80, 0.81], [0.70, 0.71, 0.70, 0.72, 0.71]),
               "sst2": ([0.60, 0.62, 0.61], [0.70, 0.69, 0.71]),
               "cola": ([0.60, 0.80, 0.70, 0.65], [0.65, 0.75, 0.72, 0.66])}
    for support, (mtl, stilts) in planted.items():
        for seed, score in enumerate(mtl):
            write_record(root, "mtl", "rte", [support], seed, score)
        for seed, score in enumerate(stilts):
            write_record(root, "stilts", "rte", [support], seed, score)
    return root


def test_aso_column_is_deepsigs_eps_min_of_the_method_ahead(aso_tree):
    from deepsig import aso

    summary = _summary(aso_tree, "--aso", "--correction", "holm")
    cells = {c["support"]: c for c in summary["cells"] if c["target"] == "rte"}
    assert set(cells) == {"mrpc", "sst2", "cola"}
    for support, cell in cells.items():
        ahead, behind = ("mtl", "stilts") if cell["diff"] >= 0 else ("stilts", "mtl")
        expected = aso(cell[f"{ahead}_scores"], cell[f"{behind}_scores"], confidence_level=0.9,
                       num_comparisons=3, seed=0, show_progress=False)
        assert cell["aso_eps_min"] == pytest.approx(expected)
        assert cell["aso_better"] == (ahead if expected < 0.5 else None)
    assert (cells["mrpc"]["aso_better"], cells["sst2"]["aso_better"]) == ("mtl", "stilts")
    report = (aso_tree / "report" / "report.md").read_text()
    assert "Almost stochastic order (deepsig" in report and "| ASO ε |" in report


def test_without_aso_the_report_says_how_to_get_it(aso_tree):
    summary = _summary(aso_tree)
    assert all(c["aso_eps_min"] is None for c in summary["cells"])
    report = (aso_tree / "report" / "report.md").read_text()
    assert "not computed; compare.py --aso" in report and "ASO ε" not in report


def test_aso_without_deepsig_is_one_clear_error(aso_tree, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "deepsig", None)  # import deepsig fails
    result = CliRunner().invoke(main, ["--outputs", str(aso_tree), "--aso"])
    assert result.exit_code != 0
    assert "pip install 'mtlvsift[aso]'" in result.output and "Traceback" not in result.output
