"""The whole workflow on real run records: single, STILTs and MTL runs over seeds, then compare.py."""

from __future__ import annotations

import json

from scipy import stats

from helpers import read_result, run_script, tiny_args


def test_train_then_compare(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "outputs"
    seeds = (0, 1)
    for seed in seeds:
        for task in ("rte", "sst2"):
            run_script("train_stilts", ["--target", task, "--seed", seed, *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    for seed in seeds:
        run_script("train_stilts", ["--target", "rte", "--support", "sst2", "--seed", seed,
                                    *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
        run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--seed", seed,
                                 *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    report = tmp_path / "report"
    result = run_script("compare", ["--outputs", out, "--report-dir", report])
    assert "MTL vs STILTs" in result.output
    summary = json.loads((report / "summary.json").read_text())
    cells = {(c["target"], c["support"]): c for c in summary["cells"]}

    mtl = [read_result(out, "mtl", "rte--sst2", s)["best"]["score"] for s in seeds]
    stilts = [read_result(out, "stilts", "rte--sst2", s)["best"]["score"] for s in seeds]
    cell = cells[("rte", "sst2")]
    assert cell["n_mtl"] == 2 and cell["n_stilts"] == 2
    assert abs(cell["mtl_mean"] - 100 * sum(mtl) / 2) < 1e-9
    assert abs(cell["stilts_mean"] - 100 * sum(stilts) / 2) < 1e-9
    expected = stats.ttest_ind(mtl, stilts)
    if cell["t"] is not None:
        assert abs(cell["t"] - expected.statistic) < 1e-6
    # RTE (48 used examples) is not smaller than SST-2 (48): the heuristic picks STILTs.
    assert cell["heuristic"] == "stilts"
    # The symmetric cell (target SST-2, support RTE) reads SST-2's best from the MTL runs.
    symmetric = cells[("sst2", "rte")]
    sst2_from_mtl = [read_result(out, "mtl", "rte--sst2", s)["best_by_task"]["sst2"]["score"] for s in seeds]
    assert symmetric["n_mtl"] == 2 and abs(symmetric["mtl_mean"] - 100 * sum(sst2_from_mtl) / 2) < 1e-9
    assert symmetric["n_stilts"] == 0
    assert (report / "figure1.png").stat().st_size > 5000
