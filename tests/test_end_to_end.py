"""The whole workflow on real run records: single, STILTs and MTL runs over seeds, then compare.py."""

from __future__ import annotations

import json

from scipy import stats

from helpers import read_result, run_script, tiny_args


def test_train_then_compare(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "outputs"
    seeds = (0, 1, 2)  # three: fewer seeds a side give no test (the degenerate-cell rule)
    for seed in seeds:
        for task in ("stsb", "rte"):
            run_script("train_stilts", ["--target", task, "--seed", seed, *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    for seed in seeds:
        run_script("train_stilts", ["--target", "stsb", "--support", "rte", "--seed", seed,
                                    "--support-seeds", "0 1 2", *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
        run_script("train_mtl", ["--target", "stsb", "--support", "rte", "--seed", seed,
                                 "--support-seeds", "0 1 2", *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    report = tmp_path / "report"
    result = run_script("compare", ["--outputs", out, "--report-dir", report])
    assert "MTL vs STILTs" in result.output
    summary = json.loads((report / "summary.json").read_text())
    cells = {(c["target"], c["support"]): c for c in summary["cells"]}

    mtl = [read_result(out, "mtl", "stsb--rte", s)["best"]["score"] for s in seeds]
    stilts = [read_result(out, "stilts", "stsb--rte", s)["best"]["score"] for s in seeds]
    cell = cells[("stsb", "rte")]
    assert cell["n_mtl"] == 3 and cell["n_stilts"] == 3
    assert abs(cell["mtl_mean"] - 100 * sum(mtl) / 3) < 1e-9
    assert abs(cell["stilts_mean"] - 100 * sum(stilts) / 3) < 1e-9
    # STS-B's score (Spearman of a regression) varies from seed to seed, so the t-test is defined
    # (a classification task of 16 dev rows can score the same on every seed: no test).
    assert len(set(mtl)) > 1 or len(set(stilts)) > 1, (mtl, stilts)
    expected = stats.ttest_ind(mtl, stilts)
    assert cell["t"] is not None and cell["p"] is not None
    assert abs(cell["t"] - expected.statistic) < 1e-6
    assert abs(cell["p"] - expected.pvalue) < 1e-9
    # STS-B and RTE both trained on 48 examples: a size tie, which the heuristic does not pick.
    assert cell["heuristic"] is None and cell["size_tie"] is True
    # The symmetric cell (target RTE, support STS-B) reads RTE's best from the MTL runs.
    symmetric = cells[("rte", "stsb")]
    rte_from_mtl = [read_result(out, "mtl", "stsb--rte", s)["best_by_task"]["rte"]["score"] for s in seeds]
    assert symmetric["n_mtl"] == 3 and abs(symmetric["mtl_mean"] - 100 * sum(rte_from_mtl) / 3) < 1e-9
    assert symmetric["n_stilts"] == 0
    assert (report / "figure1.png").stat().st_size > 5000
