"""A grid grows by a seed: after ``--seeds 0,1``, ``--seeds 0,1,2`` trains the new seed's runs,
keeps every STILTs run whose start model (the best supporting seed) did not change, keeps the
dynamic-MTL runs whose single-task scores changed as ``stale`` (not failed: exit status 0), and
``--retrain-stale`` trains exactly the stale ones again."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from helpers import grid_options, read_result, run_dir, run_script
from synthetic import write_record
from mtlvsift.grid.plan import grid_runs
from mtlvsift.run_folder import RunFolder
from mtlvsift.run_identity import StaleRun


def _grid(out: Path, tiny_model, tiny_glue, seeds: str, *extra) -> list:
    return ["--tasks", "rte,sst2", "--seeds", seeds, "--methods", "single,stilts,mtl",
            "--model", tiny_model, "--data-dir", tiny_glue, "--output-dir", out, "--epochs", "1",
            "--batch-size", "8", "--lr", "1e-3", "--max-train-examples", "24",
            "--max-seq-length", "32", *extra]


def _mtimes(out: Path, method: str, name: str, seeds) -> dict[int, int]:
    return {s: (run_dir(out, method, name, s) / "result.json").stat().st_mtime_ns for s in seeds}


def _start_seed_now(out: Path, support: str, seeds) -> int:
    """The supporting seed a STILTs run reads now: the best single run (ties: the lowest seed)."""
    scores = {s: read_result(out, "single", support, s)["best"]["score"] for s in seeds}
    return max(scores, key=lambda s: (scores[s], -s))


@pytest.mark.slow
def test_a_grid_grows_by_a_seed(tmp_path, tiny_model, tiny_glue):
    out = tmp_path / "out"
    run_script("run_grid", _grid(out, tiny_model, tiny_glue, "0,1"))
    stilts = {("rte", "sst2"): "rte--sst2__n-24", ("sst2", "rte"): "sst2--rte__n-24"}
    before = {cell: _mtimes(out, "stilts", name, (0, 1)) for cell, name in stilts.items()}
    mtl_before = _mtimes(out, "mtl", "rte--sst2__n-24", (0, 1))

    dry = run_script("run_grid", [*_grid(out, tiny_model, tiny_glue, "0,1,2"), "--dry-run"])
    text = " ".join(dry.output.split())
    # The new seed's 5 runs are trained; the STILTs and dynamic-MTL runs of seeds 0, 1 are looked
    # at again once seed 2's single runs exist (the ETA leaves them out).
    assert "15 runs, 5 to train, 4 complete (not listed)" in text, text
    assert text.count("recheck: MTL rte <- sst2 seed") == 2, text
    assert "kept if its single-task scores (the mean of seeds 0 1) stays the same over seeds 0 1 2" in text
    assert "kept if its start model (the best of seeds 0 1) stays the same over seeds 0 1 2" in text
    assert text.count("recheck: STILTs") == 4, text
    commands = text.split("Commands (in this order; finished runs left out):")[1].split("ETA:")[0]
    assert commands.count("--seed 2") == 5 and "--seed 0" not in commands and "--seed 1" not in commands

    grown = run_script("run_grid", _grid(out, tiny_model, tiny_glue, "0,1,2"))
    assert grown.exit_code == 0
    text = " ".join(grown.output.split())
    changed = 0
    for (target, support), name in stilts.items():
        start = _start_seed_now(out, support + "__n-24", (0, 1, 2))
        for seed in (0, 1):
            record = read_result(out, "stilts", name, seed)
            kept = record["start_model"]["seed"] == start
            changed += not kept
            # A run whose start model is unchanged stays valid; another is stale: neither trains.
            assert _mtimes(out, "stilts", name, [seed])[seed] == before[target, support][seed]
            assert kept or f"stale: STILTs {target} <- {support} seed {seed}" in text, text
    assert _mtimes(out, "mtl", "rte--sst2__n-24", (0, 1)) == mtl_before  # kept, stale or not
    # Dynamic MTL is stale where the mean single-task scores over seeds 0-2 differ from its own.
    means = {t: sum(read_result(out, "single", t + "__n-24", s)["best"]["score"] for s in (0, 1, 2)) / 3
             for t in ("rte", "sst2")}
    used = read_result(out, "mtl", "rte--sst2__n-24", 0)["single_scores"]
    changed += 2 * any(abs(means[t] - used[t]) > 1e-12 for t in means)
    stale = f", {changed} stale" if changed else ""
    assert f"Grid: 5 trained, {10 - changed} already complete, 0 failed{stale}" in text, text

    retrained = run_script("run_grid", [*_grid(out, tiny_model, tiny_glue, "0,1,2"), "--retrain-stale"])
    text = " ".join(retrained.output.split())
    assert (f"Grid: {changed} trained, {15 - changed} already complete, 0 failed." in text if changed
            else "All 15 runs of the grid are complete" in text), text
    again = run_script("run_grid", _grid(out, tiny_model, tiny_glue, "0,1,2"))
    assert "All 15 runs of the grid are complete" in " ".join(again.output.split())


def test_a_stilts_run_is_stale_only_when_its_start_model_changed(tmp_path):
    """The folder check: the start model decides, not --support-seeds (planned identities)."""
    config = grid_runs(["rte", "mrpc"], [0], ["stilts"], grid_options(tmp_path))[2].config
    start = {"run": "m/single/mrpc/seed-1", "seed": 1, "score": 0.7}

    made = dataclasses.replace(config, start_model={**start, "seeds": [0, 1]})
    folder = RunFolder(made.run_dir)
    folder.write_config(made.identity())
    (folder.path / "result.json").write_text("{}")
    same = dataclasses.replace(made, options={**made.options, "support_seeds": [0, 1, 2]},
                               start_model={**start, "seeds": [0, 1, 2]})
    assert folder.prepare(same.identity()) == "complete"
    moved = dataclasses.replace(same, start_model={"run": "m/single/mrpc/seed-2", "seed": 2,
                                                   "score": 0.72, "seeds": [0, 1, 2]})
    assert folder.is_stale(moved.identity())
    with pytest.raises(StaleRun, match="start model m/single/mrpc/seed-1 .seed 1, dev 0.7000. is "
                                       "now m/single/mrpc/seed-2 .seed 2, dev 0.7200."):
        folder.prepare(moved.identity())
    other = dataclasses.replace(same, options={**same.options, "lr": 1e-3})
    assert not folder.is_stale(other.identity())  # another option: changed, not stale
    stored = json.loads(folder.config_file.read_text())
    assert "support_seeds" not in stored and stored["start_model"] == start


# Single runs' dev scores by (task, seed): SST-2's seed 2 beats its seeds 0 and 1 (the STILTs runs
# from SST-2 start from another model), RTE's seed 2 does not (those from RTE stay valid).
SINGLE = {("rte", 0): 0.60, ("rte", 1): 0.64, ("rte", 2): 0.50,
          ("sst2", 0): 0.70, ("sst2", 1): 0.72, ("sst2", 2): 0.80}


def _fake_training(config, trained: list) -> None:
    """What run_training does to the folder, without training: prerequisites resolved, the
    record (its start model, its single-task scores and their seeds) and config.json written."""
    from mtlvsift.train.plan import with_prerequisites

    config = with_prerequisites(config)
    if not config.overwrite and not config.retrain_stale:
        assert not Path(config.run_dir).exists(), f"{config.run_dir} trained again"
    trained.append(config.run_dir)
    folder = Path(config.run_dir)
    score = SINGLE[config.target, config.seed] if config.method == "single" else 0.66
    write_record(folder.parents[2], config.method, config.target, config.support, config.seed, score,
                 model=config.model, folder=folder.parent.name, start_model=config.start_model,
                 single_scores=config.single_scores, single_scores_from=config.single_scores_from,
                 task_scores={t: 0.66 for t in config.tasks} if config.method == "mtl" else None)
    (folder / "config.json").write_text(json.dumps(config.identity()))


def test_growing_a_grid_keeps_what_did_not_change(tmp_path, monkeypatch):
    """Scores chosen so that both STILTs outcomes happen: from SST-2 the start model changes
    (stale), from RTE it does not (kept); dynamic MTL's mean scores change (stale)."""
    import mtlvsift.train.loop

    trained = []
    monkeypatch.setattr(mtlvsift.train.loop, "run_training", lambda config: _fake_training(config, trained))
    out = tmp_path / "out"
    grid = ["--tasks", "rte,sst2", "--methods", "single,stilts,mtl", "--output-dir", out]
    run_script("run_grid", [*grid, "--seeds", "0,1"])
    assert len(trained) == 10
    trained.clear()
    grown = run_script("run_grid", [*grid, "--seeds", "0,1,2"])
    text = " ".join(grown.output.split())
    assert sorted(Path(p).parent.parent.name + f"/{Path(p).name}" for p in trained) == [
        "mtl/seed-2", "single/seed-2", "single/seed-2", "stilts/seed-2", "stilts/seed-2"]
    for seed in (0, 1):
        assert f"stale: STILTs rte <- sst2 seed {seed}: its start model" in text, text
        assert f"STILTs sst2 <- rte seed {seed}: complete; what it read is unchanged." in text, grown.output[-3000:]
        assert f"stale: MTL rte <- sst2 seed {seed}: its single-task scores" in text
    assert "Grid: 5 trained, 6 already complete, 0 failed, 4 stale" in text, text
    trained.clear()
    dry = " ".join(run_script("run_grid", [*grid, "--seeds", "0,1,2", "--dry-run"]).output.split())
    assert "All 15 runs of the grid are complete" in dry and "(4 of them stale" in dry, dry
    assert dry.count("kept as it is (--retrain-stale trains it again)") == 4
    retrain = " ".join(run_script("run_grid", [*grid, "--seeds", "0,1,2", "--retrain-stale"]).output.split())
    assert sorted(map(str, trained)) == sorted(str(run_dir(out, m, n, s)) for m, n in
                                     (("stilts", "rte--sst2"), ("mtl", "rte--sst2")) for s in (0, 1))
    assert "Grid: 4 trained, 11 already complete, 0 failed." in retrain, retrain
    assert read_result(out, "stilts", "rte--sst2", 0)["start_model"]["seed"] == 2
