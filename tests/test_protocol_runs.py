"""The protocols and the pinning end to end: an original run on the CPU, dry-run plans of GLUE-sized
folders, compare.py's separate reports per protocol and its refusal to pool mismatched seeds."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from synthetic import write_record

from helpers import (fails, glue_sized_folder, load_script, model_dir, plan_json, read_log, read_result, run_script,
                     tiny_args)
from mtlvsift.tasks import GLUE_TASKS

GLUE_SIZES = {t: task.train_size for t, task in GLUE_TASKS.items()}


def _compare(*args):
    return CliRunner().invoke(load_script("compare").main, [str(a) for a in args],
                              catch_exceptions=False)


def test_original_run_records_its_epochs_and_ends_its_lr_early(tiny_model, tiny_glue, tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"rte": 1.0, "sst2": 0.0}))  # RTE lags: p(RTE) > 1/2 after epoch 1
    args = ["--target", "rte", "--support", "sst2", "--single-scores", scores, "--log-every", 1,
            *tiny_args(tiny_model, tiny_glue, tmp_path / "out")]
    run_script("train_mtl", [*args, "--protocol", "original"])
    record = read_result(tmp_path / "out", "mtl", "rte--sst2__protocol-original")
    assert record["protocol"] == "original" and record["config"]["protocol"] == "original"
    assert record["variant"] == ""  # the variant within its protocol: compare's default cell
    # Epoch 1 by size (48, 48 rows): quotas 4, 4 -> 12 batches of 8. Epoch 2: the softmax of the
    # gaps gives RTE more rows per batch, so RTE runs out sooner: fewer batches.
    p = record["probabilities"]
    assert p["0"] == [0.5, 0.5] and p["1"][0] > 0.5
    first, second = record["batches_per_epoch"]
    assert first == 12 and second == 48 // round(p["1"][0] * 8) < 12
    assert record["timing"]["steps"] == first + second
    # The LR schedule's length came from the first epoch (2 x 12 steps): it ends above zero.
    lr = read_log(model_dir(tmp_path / "out", tiny_model) / "mtl" / "rte--sst2__protocol-original" / "seed-0")[-1]["lr"]
    assert lr > 0 and lr == pytest.approx(1e-3 * (2 * first - first - second) / (2 * first), rel=1e-9)
    assert [h["epoch"] for h in record["history"]] == [0.5, 1.0, 1.5, 2.0]

    # A standard run of the same cell: its own folder and record, reported apart.
    run_script("train_mtl", args)
    standard = read_result(tmp_path / "out", "mtl", "rte--sst2")
    assert standard["protocol"] == "standard" and standard["batches_per_epoch"] == [12, 12]
    result = _compare("--outputs", tmp_path / "out", "--report-dir", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "MTL vs STILTs · " in result.output and "· protocol original" in result.output
    folders = sorted(p.name for p in (tmp_path / "report").iterdir() if p.is_dir())
    assert len(folders) == 2 and folders[1] == folders[0] + "__protocol-original"
    for folder, protocol, run in zip(folders, ("standard", "original"), (standard, record)):
        summary = json.loads((tmp_path / "report" / folder / "summary.json").read_text())
        cell = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("rte", "sst2"))
        assert summary["protocol"] == protocol and cell["n_mtl"] == 1
        assert cell["mtl_mean"] == pytest.approx(100 * run["best"]["score"])


def test_dry_run_plans_the_paper_numbers_without_tokenizing(tmp_path, monkeypatch):
    glue = glue_sized_folder(tmp_path / "glue")
    out = tmp_path / "out"
    plan = plan_json("train_mtl_all", out, "--protocol", "original", "--sampling", "size")
    keys = {"method", "protocol", "sampling", "tasks", "train_sizes", "batch_size", "epochs",
            "quotas", "batches_per_epoch", "lr_schedule_steps"}
    assert keys <= set(plan)
    assert plan["tasks"] == list(GLUE_SIZES) and plan["train_sizes"] == list(GLUE_SIZES.values())
    assert plan["quotas"] == [50, 49, 14, 9, 2, 1, 1, 1, 1]  # CoLA first, as the authors ran it
    assert plan["batches_per_epoch"] == [635] * 10 and plan["lr_schedule_steps"] == 6350
    assert plan["evaluations"] == 20
    plan = plan_json("train_mtl_all", out, "--protocol", "original", "--sampling", "uniform")
    assert plan["quotas"] == [14] * 9 and plan["batches_per_epoch"] == [45] * 10
    assert plan["lr_schedule_steps"] == 450
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"rte": 0.7, "mnli": 0.8}))
    plan = plan_json("train_mtl", out, "--target", "rte", "--support", "mnli", "--protocol",
                 "original", "--single-scores", scores)
    assert plan["quotas"] == [1, 127] and plan["batches_per_epoch"] == [2490] + [None] * 9
    assert plan["lr_schedule_steps"] == 24900 and plan["evaluations"] is None
    assert plan["single_scores"] == {"rte": 0.7, "mnli": 0.8}
    plan = plan_json("train_mtl", out, "--target", "rte", "--support", "mnli", "--single-scores", scores)
    assert plan["protocol"] == "standard" and plan["batches_per_epoch"] == [3088] * 10
    assert plan["quotas"] == [0.806, 127.194] and plan["rows_per_epoch"] == [2490, 392702]
    plan = plan_json("train_mtl", out, "--target", "rte", "--support", "mnli", "--sampling", "size",
                 "--max-train-examples", 1000, "--target-fraction", 0.5, "--support-ratio", 2)
    assert plan["train_sizes"] == [500, 1000] and plan["available_train_sizes"] == [2490, 392702]
    # Nothing under the output folder, nothing tokenized (the test's cache folder stays empty).
    assert not out.exists()
    assert not any(os.scandir(os.environ["MTLVSIFT_CACHE_DIR"]))
    result = run_script("train_stilts", ["--target", "rte", "--data-dir", glue, "--output-dir", out,
                                         "--protocol", "original", "--dry-run"])
    assert "protocol original" in result.output and "batches/epoch:   19 x 10" in result.output
    assert not out.exists()


def test_dry_run_names_the_stilts_start_model_or_the_missing_seeds(tmp_path):
    glue = glue_sized_folder(tmp_path / "glue")
    out = tmp_path / "out"
    args = ["--target", "rte", "--support", "mnli", "--protocol", "original", "--data-dir", glue,
            "--output-dir", out, "--dry-run"]
    for seed, score in ((0, 0.80), (1, 0.84)):
        write_record(out, "single", "mnli", seed=seed, score=score, protocol="original")
    fails("train_stilts", args, "mnli: finished seeds: 0, 1.", "for seed in 2 3 4; do accelerate "
          f"launch --quiet scripts/train_stilts.py --target mnli --data-dir {glue} --output-dir {out} "
          "--protocol original --seed $seed; done")
    for seed in (2, 3, 4):
        write_record(out, "single", "mnli", seed=seed, score=0.84, protocol="original")
    # A standard single run of MNLI with a better score does not count for the original protocol.
    write_record(out, "single", "mnli", seed=0, score=0.99)
    plan = plan_json("train_stilts", out, *args[:6])
    assert plan["start_model"] == {"run": "single/mnli__protocol-original/seed-1", "seed": 1,
                                   "score": 0.84, "seeds": [0, 1, 2, 3, 4]}  # ties: lowest seed
    assert plan["init_model"] == str(out / "single" / "mnli__protocol-original" / "seed-1" / "best")  # a legacy tree
    assert plan["batches_per_epoch"] == [19] * 10


def test_compare_refuses_to_pool_seeds_of_different_start_models_or_scores(tmp_path):
    out = tmp_path / "out"
    start = {"run": "single/mnli/seed-3", "seed": 3, "score": 0.84, "seeds": [0, 1, 2, 3, 4]}
    other = {"run": "single/mnli/seed-1", "seed": 1, "score": 0.83, "seeds": [0, 1]}
    for seed in range(3):
        write_record(out, "stilts", "rte", ["mnli"], seed, 0.70 + seed / 100,
                     start_model=start if seed < 2 else other)
        write_record(out, "mtl", "rte", ["mnli"], seed, 0.72 + seed / 100,
                     single_scores={"rte": 0.7, "mnli": 0.84})
        write_record(out, "stilts", "rte", ["sst2"], seed, 0.70 + seed / 100, start_model=start)
        write_record(out, "mtl", "rte", ["sst2"], seed, 0.72 + seed / 100,
                     single_scores={"rte": 0.7, "sst2": 0.9 + (seed == 0) / 100})
        write_record(out, "stilts", "mnli", ["rte"], seed, 0.80 + seed / 100, start_model=start)
    result = _compare("--outputs", out, "--report-dir", tmp_path / "report")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert ("not pooled: the seeds of stilts rte--mnli [" not in text and
            "not pooled: the seeds of stilts rte--mnli (distilroberta-base) started from different "
            "models: seed(s) 0, 1 started from single/mnli/seed-3 (seed 3, dev 0.84)" in text)
    assert "seed(s) 2 started from single/mnli/seed-1 (seed 1, dev 0.83)" in text
    assert "mtl rte--sst2 (distilroberta-base) used different single-task scores" in text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    refusal = next(w for w in summary["warnings"] if "stilts rte--mnli" in w)
    assert f"seed(s) 2 started from single/mnli/seed-1 (seed 1, dev 0.83) ({out}/stilts/rte--mnli/seed-2)" in refusal
    cells = {(c["target"], c["support"]): c for c in summary["cells"]}
    for key in (("rte", "mnli"), ("rte", "sst2")):
        assert cells[key]["refused"] and cells[key]["t"] is None and cells[key]["diff"] is None
    assert cells[("mnli", "rte")]["refused"] is None and cells[("mnli", "rte")]["t"] is not None
    assert "≠" in result.output


def test_an_epoch_the_original_protocol_cannot_form_fails_before_writing(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    args = ["--target", "rte", "--protocol", "original", *tiny_args(tiny_model, tiny_glue, out)]
    fails("train_stilts", [*args, "--batch-size", 64], "drops incomplete batches",
          "a task with 48 training examples", "Lower --batch-size")
    assert not out.exists()
