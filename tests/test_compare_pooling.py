"""compare.py never pools runs whose identities differ outside the seed (issue 25): runs of other
--epochs, --lr, ... get a report of their own, labelled by the options that differ; within a
group, seeds of another --init-from, start model or single-task scores refuse the cell, with every
reason and the commands that fix it; a size experiment's supporting single runs belong to the
size experiment's report, which asks for no matrix runs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import load_script, run_script
from synthetic import write_record

main = load_script("compare").main
MODEL = "distilroberta-base"
MINI = {"max_train_examples": 200, "epochs": 2, "max_seq_length": 64, "batch_size": 16}


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def commands_of(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(("accelerate", "for "))]


def new_user_tree(root: Path) -> None:
    """The issue's experiment (RTE and WNLI, seeds 0-2, --max-train-examples 200 --epochs 2), and
    two stray runs made with --epochs 1 --eval-every 1: STS-B seed 0 and RTE seed 3."""
    sizes = {"rte": 200, "wnli": 200}
    common = dict(variant="n-200", train_sizes=sizes)
    pair = dict(common, options={**MINI, "support_seeds": [0, 1, 2]})
    for seed in range(3):
        for task in ("rte", "wnli"):
            write_record(root, "single", task, [], seed, 0.55 + seed / 100, **common, options=MINI)
        write_record(root, "stilts", "rte", ["wnli"], seed, 0.56 + seed / 100, **pair)
        write_record(root, "stilts", "wnli", ["rte"], seed, 0.50 + seed / 100, **pair)
        write_record(root, "mtl", "wnli", ["rte"], seed, 0.52 + seed / 100,
                     task_scores={"wnli": 0.52 + seed / 100, "rte": 0.57}, **pair)
        write_record(root, "mtl_all", None, (), seed, None, tasks=["rte", "wnli"],
                     task_scores={"rte": 0.56, "wnli": 0.5}, train_sizes=sizes,
                     variant="tasks-rte+wnli_n-200", options=MINI)
    stray = {**MINI, "epochs": 1, "eval_every": 1.0}
    write_record(root, "single", "stsb", [], 0, 0.30, variant="n-200", train_sizes={"stsb": 200},
                 options=stray)
    write_record(root, "single", "rte", [], 3, 0.99, **common, options=stray)


def test_runs_of_other_epochs_get_a_report_of_their_own(tmp_path):
    new_user_tree(tmp_path)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    report = tmp_path / "report"
    index = json.loads((report / "summary.json").read_text())["models"]
    stray_slug = f"{MODEL}__n-200_epochs-1_eval-every-1.0"
    assert {v["report_dir"] for v in index.values()} == {f"{MODEL}__n-200", stray_slug}
    main_report = json.loads((report / f"{MODEL}__n-200" / "summary.json").read_text())
    # The stray runs are nowhere in the --epochs 2 report: not a task, not a seed, not a command.
    assert main_report["tasks"] == ["rte", "wnli"] and "stsb" not in main_report["task_info"]
    assert main_report["seeds"] == [0, 1, 2]
    singles = {g["target"]: g for g in main_report["groups"] if g["method"] == "single"}
    assert singles["rte"]["seeds"] == [0, 1, 2] and singles["rte"]["mean"] < 60
    assert "STS-B" not in main_report["tables"]["table1"]["columns"]
    assert main_report["missing"] == []
    assert "stsb" not in (report / f"{MODEL}__n-200" / "missing.sh").read_text()
    # The stray report says what tells it apart, and its commands repeat its own options.
    stray = json.loads((report / stray_slug / "summary.json").read_text())
    assert stray["settings"] == {"epochs": 1, "eval_every": 1.0}
    assert main_report["settings"] == {}
    assert sorted(stray["tasks"]) == ["rte", "stsb"]
    md = (report / stray_slug / "report.md").read_text()
    assert md.startswith(f"# MTL vs STILTs: {MODEL} (n-200, epochs 1, eval-every 1.0)")
    assert "MTL vs STILTs · distilroberta-base · n-200 · epochs 1 · eval-every 1.0" in result.stdout
    assert all("--epochs 1 " in c and "--eval-every 1.0 " in c
               for c in commands_of((report / stray_slug / "missing.sh").read_text()))


def test_a_cell_whose_seeds_were_made_with_other_identity_options_is_refused(tmp_path):
    """--init-from is identity but not in the folder name: seeds from two saved models differ."""
    for seed in range(3):
        init = "/models/a" if seed < 2 else "/models/b"
        write_record(tmp_path, "stilts", "rte", ["mrpc"], seed, 0.6 + seed / 100,
                     options={"init_from": init})
        write_record(tmp_path, "mtl", "rte", ["mrpc"], seed, 0.7 + seed / 100)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    cell = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("rte", "mrpc"))
    assert cell["t"] is None and cell["diff"] is None
    assert "were made with different options" in cell["refused"]
    assert "seed(s) 0, 1 --init-from /models/a" in cell["refused"]
    assert "seed(s) 2 --init-from /models/b" in cell["refused"]


def test_seeds_trained_on_other_data_files_are_not_pooled(tmp_path):
    """An edited GLUE file changes the data's checksums: those seeds are another experiment."""
    files = {"rte": {"train": "a" * 64, "dev": "b" * 64}, "mrpc": {"train": "c" * 64, "dev": "d" * 64}}
    edited = {**files, "rte": {"train": "e" * 64, "dev": "b" * 64}}
    for seed in range(3):
        write_record(tmp_path, "stilts", "rte", ["mrpc"], seed, 0.6 + seed / 100,
                     data_fingerprints=edited if seed == 2 else files)
        write_record(tmp_path, "mtl", "rte", ["mrpc"], seed, 0.7 + seed / 100, data_fingerprints=files)
    run("--outputs", tmp_path)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    cell = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("rte", "mrpc"))
    assert cell["t"] is None and "were trained on different data" in cell["refused"]
    assert "seed(s) 2 trained on other files of rte" in cell["refused"], cell["refused"]
    mrpc = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("mrpc", "rte"))
    assert not mrpc["refused"]  # the MTL seeds agree


def test_a_refused_cell_lists_every_reason_and_the_commands_that_fix_it(tmp_path):
    start = {"run": "single/mnli/seed-3", "seed": 3, "score": 0.84, "seeds": [0, 1, 2, 3, 4]}
    other = {"run": "single/mnli/seed-1", "seed": 1, "score": 0.83, "seeds": [0, 1, 2, 3, 4]}
    for seed in range(3):
        write_record(tmp_path, "stilts", "rte", ["mnli"], seed, 0.70 + seed / 100,
                     start_model=start if seed < 2 else other)
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.72 + seed / 100,
                     single_scores={"rte": 0.7, "mnli": 0.84 + (seed == 0) / 100})
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    cells = {(c["target"], c["support"]): c for c in summary["cells"]}
    refused = cells[("rte", "mnli")]["refused"]
    assert "stilts rte--mnli (distilroberta-base) started from different models" in refused
    assert "mtl rte--mnli (distilroberta-base) used different single-task scores" in refused
    out = shlex.quote(str(tmp_path))
    fixes = [f"for seed in 0 1 2; do accelerate launch --quiet scripts/train_mtl.py --target rte "
             f"--support mnli --overwrite --output-dir {out} --seed $seed; done",
             f"for seed in 0 1 2; do accelerate launch --quiet scripts/train_stilts.py --target rte "
             f"--support mnli --overwrite --output-dir {out} --seed $seed; done"]
    assert sorted(r["command"] for r in summary["retrain"]) == fixes
    stdout = " ".join(result.stdout.split())
    # The symmetric cell (MNLI <- RTE, read from the same MTL runs) is refused too; one fix each.
    assert cells[("mnli", "rte")]["refused"]
    assert "Cells not pooled (≠): 2" in stdout and "RTE <- MNLI" in stdout
    assert all(fix in stdout for fix in fixes)
    assert "run_grid.py --retrain-stale" in stdout
    md = (report / "report.md").read_text()
    assert all(fix in md for fix in fixes) and "## Cells not pooled (≠)" in md
    assert "started from different models" in md and "used different single-task scores" in md
    assert sorted(commands_of((report / "missing.sh").read_text())[-2:]) == fixes


def test_retraining_keeps_the_mark_of_seeds_until_decided_added(tmp_path):
    """A seed run_grid.py --until-decided added was chosen after a look at the verdict: retrained,
    it keeps --added-until-decided (the cell stays flagged sequential)."""
    start = {"run": "single/mnli/seed-3", "seed": 3, "score": 0.84, "seeds": [0, 1, 2]}
    for seed in range(4):
        write_record(tmp_path, "stilts", "rte", ["mnli"], seed, 0.70 + seed / 100,
                     start_model=start if seed < 3 else {**start, "score": 0.85},
                     options={"added_until_decided": seed == 3})
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.72 + seed / 100)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    out = shlex.quote(str(tmp_path))
    assert [r["command"] for r in summary["retrain"]] == [
        f"for seed in 0 1 2; do accelerate launch --quiet scripts/train_stilts.py --target rte --support "
        f"mnli --overwrite --output-dir {out} --seed $seed; done",
        f"accelerate launch --quiet scripts/train_stilts.py --target rte --support mnli --overwrite "
        f"--added-until-decided --output-dir {out} --seed 3"]


def test_a_size_experiments_supporting_single_runs_stay_in_its_report(tmp_path):
    """run_grid --support-ratios 0.5 --target-fraction 0.5 with --max-train-examples 100: the
    STILTs runs start from single runs capped at 25 examples (n-25); those belong to the n-100
    report, which is a size experiment and lacks no matrix runs (issue 25, finding 8)."""
    mini = {**MINI, "max_train_examples": 100}
    size = {"target_fraction": 0.5, "support_ratio": 0.5}
    for seed in (0, 1):
        for task in ("rte", "wnli"):
            write_record(tmp_path, "single", task, [], seed, 0.55, variant="n-100",
                         train_sizes={task: 100}, options=mini)
            write_record(tmp_path, "single", task, [], seed, 0.52 + seed / 100, variant="n-25",
                         train_sizes={task: 25}, options={**mini, "max_train_examples": 25})
        for target, support in (("rte", "wnli"), ("wnli", "rte")):
            start = {"run": f"single/{support}__n-25/seed-1", "seed": 1, "score": 0.53,
                     "seeds": [0, 1]}
            sizes = {target: 50, support: 25}
            variant = "n-100_tf-0.5_sr-0.5"
            write_record(tmp_path, "stilts", target, [support], seed, 0.55, variant=variant,
                         train_sizes=sizes, start_model=start, **size,
                         options={**mini, **size, "support_seeds": [0, 1]})
            if (target, seed) != ("wnli", 1):
                write_record(tmp_path, "mtl", target, [support], seed, 0.56, variant=variant,
                             train_sizes=sizes, **size, options={**mini, **size, "sampling": "dynamic",
                                                                  "support_seeds": [0, 1]},
                             task_scores={target: 0.56, support: 0.5})
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())  # one report
    assert summary["variant"] == "n-100" and len(summary["size_experiments"]) == 4
    assert sorted((g["target"], g["variant"]) for g in summary["groups"]
                  if g["variant"] == "n-25") == [("rte", "n-25"), ("wnli", "n-25")]
    # The size experiment lacks one MTL seed, and no STILTs, MTL or MTL_All matrix run.
    assert [(m["method"], m["target"], m["support"], m["seeds"]) for m in summary["missing"]] == [
        ("mtl", "wnli", "rte", [1])]
    command = summary["missing"][0]["command"]
    assert "--target-fraction 0.5 --support-ratio 0.5" in command and "--max-train-examples 100" in command


@pytest.mark.slow
def test_a_real_size_experiment_grid_is_one_report(tmp_path, tiny_model, tiny_glue):
    """The same with runs the grid trains (tiny model): the start models' recorded run folders
    are what folds the supporting runs in."""
    out = tmp_path / "out"
    run_script("run_grid", ["--tasks", "rte,sst2", "--seeds", "0,1", "--methods", "single,stilts,mtl",
                            "--support-ratios", "0.5", "--target-fraction", "0.5",
                            "--model", tiny_model, "--data-dir", tiny_glue, "--output-dir", out,
                            "--epochs", "1", "--batch-size", "8", "--max-train-examples", "40",
                            "--max-seq-length", "32"])
    result = run("--outputs", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "report" / "summary.json").read_text())  # one report
    assert summary["variant"] == "n-40" and len(summary["size_experiments"]) == 4
    assert {g["variant"] for g in summary["groups"] if g["variant"]} == {"n-10"}
    assert summary["missing"] == []
