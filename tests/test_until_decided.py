"""run_grid.py --until-decided: which cells get more seeds (planted records whose verdicts are
known), which seeds and runs, the option errors, and a tiny grid end to end."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

from helpers import model_dir, grid_options, run_script
from synthetic import write_record
from mtlvsift.grid import sequential
from mtlvsift.report.stats import analyze
from mtlvsift.run_index import discover

MODEL = "m"
MAX_SEEDS = 8
# (target, support): MTL and STILTs scores in points, one per seed (0, 1, ...).
PLANTED = {
    ("rte", "mrpc"): ([80, 81, 82], [70, 71, 72]),  # decided (p < 0.01)
    ("rte", "stsb"): ([80, 76, 84], [74, 70, 78]),  # open, diff 6 >= MDE at 8 (sd 4: 5.2)
    ("rte", "cola"): ([70.2, 69.6, 70.8], [70, 67, 73]),  # open, diff 0.2 < MDE at 8 (2.8)
    ("rte", "sst2"): ([70, 70.1, 69.9, 70.05, 69.95], [70.02, 70.12, 69.92, 70.07, 69.97]),  # equivalent
    ("mrpc", "rte"): ([75, 71], [70, 72]),  # fewer than 3 seeds: untestable
    ("mrpc", "stsb"): ([80, 76, 84, 80, 76, 84, 80, 76], [78, 74, 82, 78, 74, 82, 78, 74]),  # open at 8
    ("mrpc", "cola"): ([70, 70, 70], [70, 70, 70]),  # no variance, equal means
    ("mrpc", "sst2"): ([71, 71, 71], [70, 70, 70]),  # no variance, means differ
}
QUALIFYING = {("rte", "stsb"): 7, ("mrpc", "rte"): 3, ("mrpc", "sst2"): 4}  # -> seeds wanted


def plant(root: Path, planted: dict = PLANTED) -> None:
    for (target, support), (mtl, stilts) in planted.items():
        for method, scores in (("mtl", mtl), ("stilts", stilts)):
            for seed, points in enumerate(scores):
                write_record(root, method, target, [support], seed, points / 100, model=MODEL,
                             task_scores={target: points / 100})
    write_record(root, "stilts", "cola", ["rte"], 0, 0.5, model=MODEL)  # a cell without MTL


@pytest.fixture
def planted_analysis(tmp_path):
    plant(tmp_path)
    return analyze(discover(tmp_path).records, MODEL)


def test_the_planted_verdicts_are_what_the_cells_say(planted_analysis):
    """The cells are what their comments claim, by scipy and statsmodels directly."""
    verdicts = {key: cell.verdict for key, cell in planted_analysis.cells.items()}
    assert verdicts[("rte", "mrpc")] == "decided" and verdicts[("rte", "sst2")] == "equivalent"
    assert all(verdicts[k] == "open" for k in PLANTED if k not in {("rte", "mrpc"), ("rte", "sst2")})
    power = TTestIndPower()
    for key in (("rte", "stsb"), ("rte", "cola")):
        mtl, stilts = PLANTED[key]
        assert scipy_stats.ttest_ind(mtl, stilts).pvalue > 0.1
        sd = statistics.stdev(mtl)  # both sides have the same spread: the pooled sd
        mde = power.solve_power(nobs1=MAX_SEEDS, alpha=0.1, power=0.8, ratio=1.0) * sd
        diff = statistics.fmean(mtl) - statistics.fmean(stilts)
        assert (abs(diff) >= mde) == (key in QUALIFYING)
        if key in QUALIFYING:
            fewest = min(n for n in range(3, MAX_SEEDS + 1)
                         if power.solve_power(nobs1=n, alpha=0.1, power=0.8, ratio=1.0) * sd <= diff)
            assert fewest == QUALIFYING[key]


def test_exactly_the_open_cells_that_more_seeds_could_decide_qualify(planted_analysis):
    needing = sequential.cells_needing_seeds(planted_analysis, MAX_SEEDS, 0.1)
    assert {(t, s) for t, s, _ in needing} == set(QUALIFYING)
    reasons = {(t, s): why for t, s, why in needing}
    assert "fewer than 3 seeds" in reasons["mrpc", "rte"]
    assert "6.00 >= MDE 5.23 at 8 seeds" in reasons["rte", "stsb"]
    assert "means differ" in reasons["mrpc", "sst2"]
    needs = {(n.target, n.support): n for n in sequential.assess_cells(planted_analysis, MAX_SEEDS)}
    assert {k: n.wanted for k, n in needs.items() if n.qualifies} == QUALIFYING
    assert needs["rte", "cola"].mde == pytest.approx(2.83, abs=0.01) and not needs["rte", "cola"].qualifies
    assert "--max-seeds 8 reached" in needs["mrpc", "stsb"].reason
    assert "equal means" in needs["mrpc", "cola"].reason
    assert needs["cola", "rte"].seeds == 0 and not needs["cola", "rte"].qualifies
    # With fewer seeds allowed, the large difference no longer clears its MDE; the untestable
    # cell still gets seeds up to 3.
    fewer = {(t, s) for t, s, _ in sequential.cells_needing_seeds(planted_analysis, 4, 0.1)}
    assert fewer == {("mrpc", "rte"), ("mrpc", "sst2")}
    # Only the cells among the grid's tasks.
    only = sequential.cells_needing_seeds(planted_analysis, MAX_SEEDS, tasks=["rte", "mrpc"])
    assert [(t, s) for t, s, _ in only] == [("mrpc", "rte")]


def test_next_seeds_are_above_the_grids_and_fill_both_methods(planted_analysis, tmp_path):
    cell = planted_analysis.cells["mrpc", "rte"]  # seeds 0, 1 on both sides
    assert sequential.next_seeds(cell, 3, above=1) == [2]
    assert sequential.next_seeds(cell, 4, above=1) == [2, 3]
    assert sequential.next_seeds(cell, 3, above=4) == [5]
    lopsided = tmp_path / "lopsided"
    plant(lopsided, {("rte", "mrpc"): ([70, 71, 72], [70, 71])})
    cell = analyze(discover(lopsided).records, MODEL).cells["rte", "mrpc"]
    assert sequential.next_seeds(cell, 3, above=1) == [2]  # MTL has 2: only STILTs trains it
    assert sequential.next_seeds(cell, 4, above=1) == [2, 3]


def test_a_round_trains_both_methods_from_the_grids_single_runs(planted_analysis, tmp_path):
    needs = sequential.assess_cells(planted_analysis, MAX_SEEDS, tasks=["rte", "mrpc"])
    out = tmp_path / "out"
    seeds, runs = sequential.round_runs(planted_analysis, needs, [0, 1], grid_options(out, model=MODEL),
                                        "dynamic")
    assert seeds == {("mrpc", "rte"): [2]}
    assert [str(Path(r.run_dir).relative_to(model_dir(out, MODEL))) for r in runs] == [
        "single/mrpc/seed-0", "single/mrpc/seed-1", "single/rte/seed-0", "single/rte/seed-1",
        "stilts/mrpc--rte/seed-2", "mtl/rte--mrpc/seed-2"]
    assert all(r.config.support_seeds == [0, 1] for r in runs if r.method != "single")


@pytest.mark.parametrize("extra, message", [
    (["--max-seeds", "4"], "--max-seeds goes with --until-decided"),
    (["--until-decided"], "--until-decided needs --max-seeds M"),
    (["--until-decided", "--max-seeds", "2"], "--max-seeds 2 must be more than the 2 --seeds"),
    (["--until-decided", "--max-seeds", "4", "--emit", "shell", "--emit-to", "x"],
     "--until-decided cannot go with --emit"),
    (["--until-decided", "--max-seeds", "4", "--methods", "single,stilts"],
     "--until-decided needs --methods with both stilts and mtl"),
    (["--until-decided", "--max-seeds", "4", "--overwrite"], "cannot go with --overwrite"),
])
def test_until_decided_option_errors_are_one_line(tmp_path, extra, message):
    result = run_script("run_grid", ["--tasks", "rte,mrpc", "--seeds", "0,1", "--output-dir",
                                     tmp_path / "out", *extra], expect_ok=False)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not (tmp_path / "out").exists()


def _qualifies(mtl: list[float], stilts: list[float], max_seeds: int) -> bool:
    """The rule of docs/compare.md computed here with scipy and statsmodels (not the helper):
    whether an open cell of these seed scores (points) gets more seeds."""
    n = min(len(mtl), len(stilts))
    if n >= max_seeds:
        return False
    if n < 3:
        return True
    diff = statistics.fmean(mtl) - statistics.fmean(stilts)
    if statistics.pvariance(mtl) == 0 and statistics.pvariance(stilts) == 0:
        return diff != 0
    with warnings.catch_warnings():  # nearly equal seeds: scipy warns, the p value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p = scipy_stats.ttest_ind(mtl, stilts).pvalue
    if p < 0.1 or ttost_ind(
            np.asarray(mtl), np.asarray(stilts), -0.5, 0.5)[0] < 0.1:
        return False  # decided or equivalent
    dof = len(mtl) + len(stilts) - 2
    sd = ((len(mtl) - 1) * statistics.variance(mtl) + (len(stilts) - 1) * statistics.variance(stilts))
    mde = TTestIndPower().solve_power(nobs1=max_seeds, alpha=0.1, power=0.8, ratio=1.0) * (sd / dof) ** 0.5
    return abs(diff) >= mde


def _scores(folder: Path, task: str, seeds) -> list[float]:
    """The task's best dev score (points) of each seed, read from result.json."""
    return [json.loads((folder / f"seed-{s}" / "result.json").read_text())["best_by_task"][task]["score"]
            * 100 for s in seeds]


def _seed_folders(folder: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in folder.glob("seed-*/result.json"))


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.slow
def test_until_decided_adds_seeds_only_where_the_verdict_is_open(tmp_path, tiny_model, tiny_glue):
    """A tiny grid of RTE and SST-2 with seeds 0, 1 and --max-seeds 4: the dry run lists the
    cells that qualify (two seeds: both, untestable); the run gives them seed 2, then seed 3 to
    those that still qualify by scipy/statsmodels on the three seeds' records, and nothing to
    the single runs; a second call trains nothing."""
    out = tmp_path / "out"
    grid = ["--tasks", "rte,sst2", "--methods", "single,stilts,mtl", "--seeds", "0,1",
            "--model", tiny_model, "--data-dir", tiny_glue, "--output-dir", out, "--epochs", "1",
            "--batch-size", "8", "--lr", "1e-3", "--max-train-examples", "40",
            "--max-seq-length", "32"]
    until = ["--until-decided", "--max-seeds", "4"]
    run_script("run_grid", grid)
    stilts = {cell: model_dir(out, tiny_model) / "stilts" / f"{cell[0]}--{cell[1]}__n-40" for cell in (("rte", "sst2"), ("sst2", "rte"))}
    mtl = model_dir(out, tiny_model) / "mtl" / "rte--sst2__n-40"  # RTE is the smaller: the target of the one MTL run
    before = _tree(out)
    dry = run_script("run_grid", [*grid, *until, "--dry-run"]).output
    assert _tree(out) == before, "--dry-run wrote under the outputs"
    for target, support in stilts:
        assert _qualifies(_scores(mtl, target, [0, 1]), _scores(stilts[target, support], target, [0, 1]), 4)
        assert f"{target} <- {support}: 2 seeds, diff " in dry
        assert f"would get seed(s) 2 (fewer than 3 seeds" in dry.split(f"{target} <- {support}: ")[1].split("\n")[0]
    assert "2 cell(s) would get seeds in the first round" in " ".join(dry.split())

    done = run_script("run_grid", [*grid, *until]).output
    third = {cell: _qualifies(_scores(mtl, cell[0], [0, 1, 2]), _scores(folder, cell[0], [0, 1, 2]), 4)
             for cell, folder in stilts.items()}
    for cell, folder in stilts.items():
        assert _seed_folders(folder) == [0, 1, 2] + ([3] if third[cell] else []), (cell, third)
        n = 4 if third[cell] else 3
        assert f"{cell[0]} <- {cell[1]}: {n} MTL, {n} STILTs seeds (added [2{', 3' if n == 4 else ''}])" in done
    assert _seed_folders(mtl) == [0, 1, 2] + ([3] if any(third.values()) else [])
    for task in ("rte", "sst2"):  # the single runs STILTs and dynamic MTL read are the grid's
        assert _seed_folders(model_dir(out, tiny_model) / "single" / f"{task}__n-40") == [0, 1]
    assert "seeds per cell (2 from the grid, at most 4)" in done
    marked = {p.parent.name: json.loads(p.read_text())["config"]["added_until_decided"]
              for p in stilts["rte", "sst2"].glob("seed-*/result.json")}
    assert marked == {"seed-0": False, "seed-1": False, "seed-2": True, **(
        {"seed-3": True} if third["rte", "sst2"] else {})}
    run_script("compare", ["--outputs", out])
    summary = json.loads(next((out / "report").rglob("summary.json")).read_text())
    assert {(c["target"], c["support"]): c["sequential"] for c in summary["cells"]} == {
        ("rte", "sst2"): True, ("sst2", "rte"): True}

    before = _tree(out)
    again = run_script("run_grid", [*grid, *until]).output
    assert _tree(out) == before, "a second call trained or wrote something"
    assert "round" not in again and "seeds per cell" in again


def test_the_report_flags_the_cells_whose_seeds_were_added_sequentially(tmp_path):
    """A STILTs seed recorded as added by --until-decided: compare.py marks its cell
    ``sequential`` (summary.json, cells.csv, report.md) and no other; missing-run commands never
    carry the mark."""
    plant(tmp_path, {("rte", "mrpc"): ([70, 75, 72], [71, 70, 73]),
                     ("mrpc", "rte"): ([70, 75, 72], [71, 70, 73])})
    write_record(tmp_path, "stilts", "rte", ["mrpc"], 3, 0.72, model=MODEL,
                 options={"added_until_decided": True})
    run_script("compare", ["--outputs", tmp_path])
    report = tmp_path / "report"
    cells = {(c["target"], c["support"]): c for c in json.loads((report / "summary.json").read_text())["cells"]}
    assert cells["rte", "mrpc"]["sequential"] is True and cells["rte", "mrpc"]["n_stilts"] == 4
    assert cells["mrpc", "rte"]["sequential"] is False
    assert "sequential" in (report / "cells.csv").read_text().splitlines()[0]
    text = " ".join((report / "report.md").read_text().split())
    assert "1 cell(s) got seeds from run_grid.py --until-decided after their verdict was seen (RTE ← MRPC;" in text
    # Seed 3 is asked of no other run; a seed the report lacks is asked without the mark.
    assert json.loads((report / "summary.json").read_text())["expected_seeds"] == [0, 1, 2]
    missing = (report / "missing.sh").read_text()
    assert "# MTL rte <- mrpc" not in missing and "seeds 0, 1, 2, 3" not in missing, missing
    (tmp_path / "stilts" / "mrpc--rte" / "seed-2" / "result.json").unlink()
    write_record(tmp_path, "stilts", "mrpc", ["rte"], 1, 0.7, model=MODEL, folder="mrpc--rte",
                 options={"added_until_decided": True})  # (never so: a made-up mark on seed 1)
    run_script("compare", ["--outputs", tmp_path])
    missing = (report / "missing.sh").read_text()
    assert "--seed 2" in missing and "--added-until-decided" not in missing


# Scores (points) a fake run_training gives: cell (rte, mrpc) open at 3 seeds with a difference
# (6.5, sd 4: p 0.12) that 6 seeds could detect; cell (mrpc, rte) decided at 3 (10, sd 4).
FAKE_MEANS = {("mtl", "rte"): 80, ("stilts", "rte"): 73.5, ("mtl", "mrpc"): 80, ("stilts", "mrpc"): 70}
SPREAD = (0, -4, 4)  # by seed % 3


def _fake_training(config) -> None:
    """Write the run's record (and config.json, so the grid finds it complete) without training."""
    def points(task: str) -> float:
        return FAKE_MEANS.get((config.method, task), 70) + SPREAD[config.seed % 3]

    folder = Path(config.run_dir)
    scores = {t: points(t) / 100 for t in config.tasks}
    write_record(folder.parents[2], config.method, config.target, config.support, config.seed,
                 scores[config.target], model=config.model, task_scores=scores,
                 folder=folder.parent.name,
                 options={"added_until_decided": bool(config.options.get("added_until_decided"))})
    (folder / "config.json").write_text(json.dumps(config.identity()))


def test_rounds_go_on_until_no_cell_qualifies(tmp_path, monkeypatch):
    """Round 1 gives both untestable cells seed 2; round 2 gives the open cell the seeds its power
    analysis asks for (6 = M: MDE 6.2 at 6 seeds <= 6.5, 6.9 at 5 > 6.5, by statsmodels here) and
    the decided one none; then nothing qualifies. The MTL run of the pair serves both cells."""
    import mtlvsift.train.loop

    power = TTestIndPower()
    assert power.solve_power(nobs1=6, alpha=0.1, power=0.8, ratio=1.0) * 4 <= 6.5 < \
        power.solve_power(nobs1=5, alpha=0.1, power=0.8, ratio=1.0) * 4
    assert 0.1 < scipy_stats.ttest_ind([80, 76, 84], [73.5, 69.5, 77.5]).pvalue
    assert scipy_stats.ttest_ind([80, 76, 84], [70, 66, 74]).pvalue < 0.1
    trained = []
    monkeypatch.setattr(mtlvsift.train.loop, "run_training",
                        lambda config: (trained.append(config.run_dir), _fake_training(config)))
    out = tmp_path / "out"
    grid = ["--tasks", "rte,mrpc", "--methods", "single,stilts,mtl", "--seeds", "0,1",
            "--output-dir", out, "--until-decided", "--max-seeds", "6"]
    run_script("run_grid", grid[:-3])  # the grid's own seeds
    before = _tree(out)
    dry = run_script("run_grid", [*grid, "--dry-run"]).output
    assert _tree(out) == before and len(trained) == 10
    assert "rte <- mrpc: 2 seeds, diff +6.50, MDE at 6 –, open: would get seed(s) 2 (fewer than 3" in dry
    assert "mrpc <- rte: 2 seeds, diff +10.00, MDE at 6 –, open: would get seed(s) 2 (fewer than 3" in dry
    done = run_script("run_grid", grid).output
    assert _seed_folders(model_dir(out) / "stilts" / "rte--mrpc") == [0, 1, 2, 3, 4, 5]
    assert _seed_folders(model_dir(out) / "stilts" / "mrpc--rte") == [0, 1, 2]
    assert _seed_folders(model_dir(out) / "mtl" / "rte--mrpc") == [0, 1, 2, 3, 4, 5]
    assert _seed_folders(model_dir(out) / "single" / "rte") == _seed_folders(model_dir(out) / "single" / "mrpc") == [0, 1]
    assert len(trained) == 10 + 3 + 6 and len(set(trained)) == len(trained)  # grid, round 1, round 2
    assert "--until-decided (round 1)" in done and "--until-decided (round 2)" in done
    assert "round 3" not in done
    assert "rte <- mrpc: 6 MTL, 6 STILTs seeds (added [2, 3, 4, 5])" in done
    assert "mrpc <- rte: 6 MTL, 3 STILTs seeds (added [2, 3, 4, 5]); decided" in done
    again = run_script("run_grid", grid).output
    assert len(trained) == 19 and "round 1" not in again
    dry = run_script("run_grid", [*grid, "--dry-run"]).output
    assert "0 cell(s) would get seeds" in " ".join(dry.split())
    assert "rte <- mrpc: 6 seeds, diff +6.50, MDE at 6 –, decided: no seeds (no more seeds needed)" in dry


def test_the_grid_judges_the_report_its_own_runs_are_in(tmp_path):
    """A grid whose settings are the minority of the tree (here --epochs 2 among runs of the
    default 10): --until-decided judges the report that holds its runs, not the tree's main one."""
    from mtlvsift.grid.plan import grid_runs
    from mtlvsift.run_index import discover

    out = tmp_path / "out"
    root = model_dir(out, MODEL)
    for task in ("cola", "sst2", "stsb", "qnli"):  # 12 runs of the default 10 epochs: the main report
        for seed in range(3):
            write_record(root, "single", task, seed=seed, model=MODEL)
    runs = grid_runs(["rte", "mrpc"], [0, 1], ["stilts", "mtl"], grid_options(out, model=MODEL, epochs=2))
    for run in runs:
        c = run.config
        write_record(root, c.method, c.target, c.support, c.seed, 0.7, model=MODEL,
                     folder=c.name, options={"epochs": 2})
    key = sequential.report_key(runs, discover(out).records)
    assert key.settings == (("epochs", 2),)
    assert sequential.grid_analysis(out, runs).cells[("rte", "mrpc")].mtl.n == 2
