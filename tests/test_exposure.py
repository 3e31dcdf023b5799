"""Each task's exposure, explicit and selectable: the epoch's length (--mtl-epoch sum|target), the
cap on passes (--max-passes), temperature sampling, and what the plan, the record and the train
log say of each task's rows and passes. Exact arrays, at GLUE's sizes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import (fails, glue_sized_folder, plan_json, read_log, read_result, run_dir, run_script,
                     stopped_at_a_checkpoint_then_resumed, tiny_args)
from synthetic import write_record
from mtlvsift.tasks import GLUE_TASKS
from mtlvsift.train.batches.probabilities import task_probabilities, temperature_probabilities
from mtlvsift.train.batches.sampling import (TARGET_EPOCH_LIMIT, capped_rows, epoch_schedule, passes,
                                             schedule_counts, standard_epoch_length, standard_epoch_rows)
from mtlvsift.train.optimization import linear_lr_factor, schedule_position

RTE, MNLI, WNLI = (GLUE_TASKS[t].train_size for t in ("rte", "mnli", "wnli"))


def test_glue_sizes_are_the_official_ones():
    assert (RTE, MNLI, WNLI) == (2490, 392702, 635)


def test_a_target_epoch_shows_the_target_once_and_the_support_in_proportion():
    rows = standard_epoch_rows([RTE, MNLI], [0.5, 0.5], "target")
    assert rows.tolist() == [2490, 2490] and rows.sum() == 4980
    assert [round(x, 4) for x in passes(rows, [RTE, MNLI])] == [1.0, 0.0063]
    # A large target with a tiny support: the target still gets its pass, WNLI ~618.
    rows = standard_epoch_rows([MNLI, WNLI], [0.5, 0.5], "target")
    assert rows.tolist() == [392702, 392702]
    # The sum epoch at the same p: RTE 78.6 passes, MNLI 0.503.
    rows = standard_epoch_rows([RTE, MNLI], [0.5, 0.5], "sum")
    assert rows.tolist() == [197596, 197596]
    assert [round(x, 3) for x in passes(rows, [RTE, MNLI])] == [79.356, 0.503]


def test_a_target_epoch_is_bounded_where_the_target_is_hardly_sampled():
    assert standard_epoch_length([RTE, MNLI], [0.0, 1.0], "target") == RTE + MNLI
    assert standard_epoch_length([RTE, MNLI], [1e-9, 1 - 1e-9], "target") == TARGET_EPOCH_LIMIT * (RTE + MNLI)
    # Size sampling: the target epoch is the sum epoch.
    assert standard_epoch_length([RTE, MNLI], [RTE / (RTE + MNLI), MNLI / (RTE + MNLI)], "target") == RTE + MNLI


def test_max_passes_caps_a_task_and_gives_its_rows_to_the_others():
    rows = standard_epoch_rows([RTE, MNLI], [0.5, 0.5], "sum", max_passes=3)
    assert rows.tolist() == [7470, 387722] and rows.sum() == 395192
    assert passes(rows, [RTE, MNLI])[0] == 3.0


def test_a_cap_is_shared_again_until_no_task_is_over_its_own():
    # Round 1: task 0 over its cap (10); round 2: the 1,300 left split 650/650 puts task 1 over
    # its 300; task 2 takes the remaining 1,000 (its cap exactly).
    assert capped_rows([10, 300, 1000], [0.8, 0.1, 0.1], 1310, max_passes=1).tolist() == [10, 300, 1000]
    # Every task capped: the epoch ends with fewer rows.
    assert capped_rows([100, 200], [0.5, 0.5], 300, max_passes=0.5).tolist() == [50, 100]
    # A task with p = 0 takes no rows beyond the cap of the others.
    assert capped_rows([100, 200], [1.0, 0.0], 300, max_passes=1).tolist() == [100, 0]
    # No cap reached: the plain largest-remainder shares.
    assert capped_rows([100, 200], [0.5, 0.5], 301, max_passes=5).tolist() == [151, 150]


def test_the_schedule_follows_the_capped_rows_exactly():
    sizes = [40, 400]
    schedule = epoch_schedule(sizes, [0.5, 0.5], 16, seed=3, epoch=1, max_passes=2)
    assert schedule_counts(schedule, 2).tolist() == [80, 360]
    assert sum(len(b) for b in schedule) == 440 and len(schedule) == math.ceil(440 / 16)


def test_temperature_probabilities_at_t2_are_the_square_roots_normalised():
    sizes = np.array([task.train_size for task in GLUE_TASKS.values()])
    expected = np.sqrt(sizes) / np.sqrt(sizes).sum()
    p = task_probabilities("temperature", sizes, 4, temperature=2.0)
    assert np.max(np.abs(p - expected)) < 1e-12
    assert np.allclose(temperature_probabilities(sizes, 1.0), sizes / sizes.sum(), rtol=0, atol=1e-15)
    assert np.allclose(temperature_probabilities(sizes, 1e6), 1 / sizes.size, atol=1e-5)
    # Over an epoch (sum of the sizes rows), each task's rows are round(p_i x rows) within one.
    total = int(sizes.sum())
    counts = schedule_counts(epoch_schedule(sizes, p, 128, seed=0, epoch=0), sizes.size)
    assert counts.sum() == total and np.all(np.abs(counts - np.round(p * total)) <= 1)


def test_the_lr_goes_by_epochs_trained_where_epochs_vary():
    lengths = {"0": 10, "1": 4}
    assert [schedule_position(s, lengths) for s in (0, 5, 10, 12, 14)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [linear_lr_factor(x, 2, 0.0) for x in (0.0, 1.5, 2.0)] == [1.0, 0.25, 0.0]
    assert [linear_lr_factor(x, 2, 0.25) for x in (0.25, 0.5, 2.0)] == [0.5, 1.0, 0.0]


def test_the_plan_gives_each_epochs_passes_at_glue_sizes(tmp_path):
    glue_sized_folder(tmp_path / "glue")
    out = tmp_path / "out"
    pair = ["--target", "rte", "--support", "mnli", "--sampling", "uniform"]
    plan = plan_json("train_mtl", out, *pair, "--mtl-epoch", "target")
    assert plan["rows_per_epoch"] == [2490, 2490] and plan["batches_per_epoch"] == [39] * 10
    assert plan["passes_per_epoch"] == [[1.0, 2490 / 392702]] * 10
    assert plan["run_dir"].endswith("rte--mnli__sampling-uniform_epoch-target/seed-0")
    text = run_script("train_mtl", [*pair, "--mtl-epoch", "target", "--data-dir", tmp_path / "glue",
                                     "--output-dir", out, "--dry-run"]).output
    assert "passes/epoch:    rte 1, mnli 0.00634 (epoch 1)" in text and "rows per batch 64.0, 64.0" in text
    plan = plan_json("train_mtl", out, *pair, "--max-passes", "3")
    assert plan["rows_per_epoch"] == [7470, 387722] and plan["batches_per_epoch"] == [3088] * 10
    assert plan["quotas"] == [round(7470 * 128 / 395192, 3), round(387722 * 128 / 395192, 3)]
    assert plan["passes_per_epoch"] == [[3.0, 387722 / 392702]] * 10
    # Dynamic sampling: the first epoch by size (the target epoch is then the sum), later ones
    # follow the dev scores: unknown, and so are their lengths.
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"rte": 0.7, "mnli": 0.8}))
    plan = plan_json("train_mtl", out, "--target", "rte", "--support", "mnli", "--mtl-epoch", "target",
                     "--single-scores", scores)
    assert plan["passes_per_epoch"] == [[1.0, 1.0]] + [None] * 9
    assert plan["batches_per_epoch"] == [3088] + [None] * 9 and plan["evaluations"] is None
    # MTL_All: every task one pass per sum epoch under size sampling.
    plan = plan_json("train_mtl_all", out)
    assert plan["passes_per_epoch"] == [[1.0] * 9] * 10
    assert not out.exists()


def test_exposure_options_refuse_what_they_cannot_do(tiny_glue, tmp_path):
    base = ["--target", "rte", "--support", "sst2", "--data-dir", tiny_glue, "--output-dir", tmp_path / "o",
            "--sampling", "size", "--dry-run"]
    fails("train_mtl", [*base, "--protocol", "original", "--mtl-epoch", "target"],
          "--mtl-epoch target set the standard protocol's epochs", "--protocol original")
    fails("train_mtl", [*base, "--batching", "homogeneous", "--max-passes", "2"],
          "homogeneous batches", "--batching heterogeneous")
    fails("train_mtl", [*base, "--max-passes", "0.001"], "--max-passes 0.001 leaves no task a single row")
    fails("train_mtl_all", ["--tasks", "rte,sst2", "--mtl-epoch", "target", "--dry-run"], "No such option")
    fails("train_mtl", [*base, "--max-passes", "nan"], "--max-passes")
    fails("train_mtl", [*base, "--temperature", "3"], "--temperature 3 is temperature sampling's",
          "--sampling temperature")
    assert not (tmp_path / "o").exists()


def test_a_run_records_each_epochs_rows_as_its_train_log_counts_them(tiny_model, tiny_glue, tmp_path):
    # Dynamic sampling, target epochs: epoch 1 by size (48 + 48 rows); RTE lags its single score,
    # so p(RTE) > 1/2 in epoch 2 and the epoch that shows RTE once is shorter.
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"rte": 1.0, "sst2": 0.0}))
    out = tmp_path / "out"
    result = run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--single-scores", scores,
                                      "--mtl-epoch", "target", "--log-every", 3,
                                      *tiny_args(tiny_model, tiny_glue, out)])
    assert "Passes over each task's data in epoch 1: rte 1, sst2 1 (later epochs follow" in result.output
    name = "rte--sst2__epoch-target"
    record = read_result(out, "mtl", name)
    rows = record["rows_per_epoch"]
    assert rows[0] == [48, 48] and abs(rows[1][0] - 48) <= 1 and rows[1][1] < 48
    assert record["passes_per_epoch"] == [[r / 48 for r in epoch] for epoch in rows]
    assert record["batches_per_epoch"] == [12, math.ceil(sum(rows[1]) / 8)]
    # What the train log counted, epoch by epoch (a log line ends every epoch).
    log = read_log(run_dir(out, "mtl", name))
    counted = [[0, 0], [0, 0]]
    for line in log:
        epoch = math.ceil(line["epoch"]) - 1
        counted[epoch] = [c + line["task_rows"][t] for c, t in zip(counted[epoch], ("rte", "sst2"))]
    assert counted == rows
    # The epochs' lengths differ, yet the LR reaches 0 at the last step.
    assert log[-1]["step"] == sum(record["batches_per_epoch"]) and log[-1]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_the_report_shows_each_methods_passes_per_cell(tmp_path):
    out = tmp_path / "out"
    for seed, (mtl, stilts) in enumerate([(0.71, 0.66), (0.72, 0.65), (0.70, 0.67)]):
        # MTL with target epochs: RTE once, MNLI in proportion; epoch 2 with another p.
        write_record(out, "mtl", "rte", ["mnli"], seed, mtl, rows_per_epoch=[[2490, 2490], [2490, 7470]])
        write_record(out, "stilts", "rte", ["mnli"], seed, stilts)
        write_record(out, "single", "mnli", [], seed, 0.84)
        write_record(out, "single", "rte", [], seed, 0.62)
    result = run_script("compare", ["--outputs", out, "--report-dir", tmp_path / "report"])
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    cell = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("rte", "mnli"))
    assert cell["mtl_target_passes"] == 1.0
    assert cell["mtl_support_passes"] == pytest.approx((2490 + 7470) / 2 / 392702, rel=1e-12)
    assert cell["stilts_target_passes"] == 1.0 and cell["stilts_support_passes"] == 1.0
    # The symmetric cell (MNLI with RTE support, read from the same MTL runs) has no STILTs side.
    mirrored = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("mnli", "rte"))
    assert mirrored["mtl_target_passes"] == cell["mtl_support_passes"] and mirrored["stilts_target_passes"] is None
    assert "| 1 · 0.0127 | 1 · 1 |" in (tmp_path / "report" / "report.md").read_text()
    assert "mtl_target_passes" in (tmp_path / "report" / "cells.csv").read_text().splitlines()[0]
    assert result.exit_code == 0


@pytest.mark.slow
def test_a_resumed_run_of_varying_epochs_ends_as_an_uninterrupted_one(tiny_model, tiny_glue, tmp_path,
                                                                     monkeypatch):
    # Its LR goes by epochs trained, read from the progress the checkpoint restores.
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"rte": 1.0, "sst2": 0.0}))

    def command(out):
        return ["--target", "rte", "--support", "sst2", "--single-scores", scores, "--max-passes", "0.75",
                "--mtl-epoch", "target", "--log-every", 1, *tiny_args(tiny_model, tiny_glue, out, epochs=3)]

    run_script("train_mtl", command(tmp_path / "clean"))
    stopped_at_a_checkpoint_then_resumed(monkeypatch, "train_mtl", command(tmp_path / "resumed"),
                                         "after_checkpoint:oserror:3")
    name = "rte--sst2__epoch-target_passes-0.75"
    clean, resumed = (read_result(tmp_path / n, "mtl", name) for n in ("clean", "resumed"))
    assert clean["rows_per_epoch"] == resumed["rows_per_epoch"] and clean["history"] == resumed["history"]
    assert clean["rows_per_epoch"][0] == [36, 36]  # capped at 0.75 x 48: the epoch ends there
    logs = [read_log(run_dir(tmp_path / n, "mtl", name)) for n in ("clean", "resumed")]
    assert [(e["step"], e["loss"], e["lr"]) for e in logs[0]] == [(e["step"], e["loss"], e["lr"]) for e in logs[1]]
    assert logs[0][-1]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_the_regimes_table_is_the_samplers(monkeypatch):
    from bench.regimes import table

    text = table()
    assert "| standard, `--mtl-epoch target` | 1 · 1 | 1 · 0.00634 |" in text
    assert "| standard, `--mtl-epoch sum` (default) | 1 · 1 | 79.4 · 0.503 |" in text
    assert "| 1 · 1 | 3 · 0.987 |" in text and "0.205 · 1 | 0.00147 · 0.907 |" in text


def test_each_mtl_configuration_makes_its_own_matrix_against_the_same_stilts_runs(tmp_path):
    out = tmp_path / "out"
    for seed in range(3):
        write_record(out, "mtl", "rte", ["mnli"], seed, 0.70 + seed / 100)
        write_record(out, "mtl", "rte", ["mnli"], seed, 0.60 + seed / 100, variant="epoch-target",
                     options={"mtl_epoch": "target"}, rows_per_epoch=[[2490, 2490]])
        write_record(out, "mtl", "rte", ["sst2"], seed, 0.61 + seed / 100, variant="epoch-target",
                     options={"mtl_epoch": "target"})
        write_record(out, "stilts", "rte", ["mnli"], seed, 0.66 + seed / 100)
        for task, score in (("mnli", 0.84), ("rte", 0.62), ("sst2", 0.9)):
            write_record(out, "single", task, [], seed, score)
    result = run_script("compare", ["--outputs", out, "--report-dir", tmp_path / "report"])
    assert "MTL vs STILTs · distilroberta-base · MTL epoch-target" in " ".join(result.output.split())
    default, target = (json.loads((tmp_path / "report" / f / "summary.json").read_text())
                       for f in ("distilroberta-base", "distilroberta-base__mtl-epoch-target"))
    cell = {r: next(c for c in s["cells"] if (c["target"], c["support"]) == ("rte", "mnli"))
            for r, s in (("default", default), ("target", target))}
    assert cell["default"]["mtl_mean"] == pytest.approx(71.0) and cell["target"]["mtl_mean"] == pytest.approx(61.0)
    assert cell["default"]["stilts_scores"] == cell["target"]["stilts_scores"]  # the same STILTs runs
    assert cell["target"]["mtl_support_passes"] == 2490 / 392702 and cell["default"]["mtl_support_passes"] == 1.0
    # The configuration's missing runs are asked with its options; the default report's without.
    assert "--target sst2 --support rte" in (tmp_path / "report" / "distilroberta-base__mtl-epoch-target"
                                             / "missing.sh").read_text()
    missing = (tmp_path / "report" / "distilroberta-base__mtl-epoch-target" / "missing.sh").read_text()
    mtl_lines = [line for line in missing.splitlines() if "train_mtl.py" in line]
    assert mtl_lines and all("--mtl-epoch target" in line for line in mtl_lines)
    default_missing = (tmp_path / "report" / "distilroberta-base" / "missing.sh").read_text()
    assert "--mtl-epoch" not in default_missing and "--target rte --support sst2" in default_missing
