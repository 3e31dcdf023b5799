"""Runs that learned nothing are flagged (issue 25, finding 8): every configuration with seeds at
or below its task's majority-class baseline (within 0.5 points), in the terminal, report.md and
summary.json, whatever its cell says (every WNLI run of the issue's experiment sat there)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import load_script
from synthetic import write_record

main = load_script("compare").main
BASELINES = {"rte": 0.527, "wnli": 0.563}


def test_runs_at_or_below_the_baseline_are_flagged_per_configuration(tmp_path):
    for seed in range(3):
        write_record(tmp_path, "single", "wnli", [], seed, 0.563, baselines=BASELINES)
        write_record(tmp_path, "single", "rte", [], seed, 0.60 + seed / 100, baselines=BASELINES)
        # MTL on WNLI: one seed above, two below; its RTE side (the symmetric cell) learned.
        write_record(tmp_path, "mtl", "wnli", ["rte"], seed, (0.60, 0.45, 0.50)[seed],
                     baselines=BASELINES, task_scores={"wnli": (0.60, 0.45, 0.50)[seed],
                                                       "rte": 0.62})
        write_record(tmp_path, "stilts", "wnli", ["rte"], seed, 0.566, baselines=BASELINES,
                     start_model={"run": "single/rte", "seed": 2, "score": 0.62,
                                  "seeds": [0, 1, 2]})
    result = CliRunner().invoke(main, ["--outputs", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    expected = ("At or below the majority-class baseline (within 0.5 points: nothing learned): "
                "single WNLI all 3 seeds · MTL WNLI ← RTE seeds 1, 2 of 3 · "
                "STILTs WNLI ← RTE all 3 seeds.")
    assert expected in out
    report = " ".join((tmp_path / "report" / "report.md").read_text().split())
    assert expected in report
    flagged = json.loads((tmp_path / "report" / "summary.json").read_text())["at_baseline_runs"]
    assert [(f["method"], f["target"], f["support"], f["seeds"], f["n"]) for f in flagged] == [
        ("single", "wnli", [], [0, 1, 2], 3), ("mtl", "wnli", ["rte"], [1, 2], 3),
        ("stilts", "wnli", ["rte"], [0, 1, 2], 3)]
    assert flagged[0]["baseline"] == 56.3


def test_no_flag_without_baselines_or_above_them(tmp_path):
    for seed in range(2):
        write_record(tmp_path, "single", "rte", [], seed, 0.40)  # no baselines recorded
        write_record(tmp_path, "single", "wnli", [], seed, 0.60, baselines=BASELINES)
    result = CliRunner().invoke(main, ["--outputs", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0 and "At or below the majority-class baseline" not in result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["at_baseline_runs"] == []
