"""The benchmarks of the bench package: paper_cost's arithmetic against hand-computed numbers,
the measurement helpers, the loop runner reading a run record, and bench.gpu_train /
bench.cpu_train / bench.compare_report / bench.start_time finishing on the CPU in a small
configuration.

bench/ is imported as a package from the repository root (setup.cfg: ``pythonpath = .``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench import compare_report, cpu_train, gpu_train, loop_runner, measure, paper_cost, \
    recommend_features, start_time
from bench import fixtures as bench_fixtures
from helpers import REPO_ROOT


def invoke(module, args: list) -> str:
    result = CliRunner().invoke(module.main, [str(a) for a in args], catch_exceptions=True)
    if result.exit_code != 0:
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        raise AssertionError(f"{module.__name__} {args} failed ({result.exit_code}):\n{result.output}\n{tb}")
    return result.output


# --------------------------------------------------------------------------- the package


def test_bench_is_a_package_that_changes_nothing_on_import():
    """Importing the benchmarks edits neither sys.path nor the environment and loads neither
    transformers nor datasets (each script's main() sets the offline variables first)."""
    code = (
        "import json, os, sys\n"
        "path, env = list(sys.path), dict(os.environ)\n"
        "import bench.gpu_train, bench.cpu_train, bench.paper_cost, bench.compare_report, bench.grid_overhead\n"
        "import bench.recommend_features, bench.start_time, bench.reproduce\n"
        "print(json.dumps({'path': sys.path == path, 'env': dict(os.environ) == env,\n"
        "                  'heavy': sorted(m for m in ('transformers', 'datasets') if m in sys.modules)}))\n")
    env = {k: v for k, v in os.environ.items() if k not in bench_fixtures.OFFLINE}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == {"path": True, "env": True, "heavy": []}
    for source in (REPO_ROOT / "bench").glob("*.py"):  # the loop is measured, never patched
        text = source.read_text()
        assert "sys.path" not in text and "mock" not in text, source


def test_scripts_run_as_modules_from_the_repository_root():
    for name in ("gpu_train", "cpu_train", "paper_cost", "compare_report", "grid_overhead",
                 "recommend_features", "start_time", "reproduce"):
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"], cwd=REPO_ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 0 and "Usage:" in done.stdout, (name, done.stderr)
    done = subprocess.run([sys.executable, "-m", "bench.paper_cost", "--train-rate", "2959",
                           "--eval-rate", "4853"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "87.4 GPU-hours" in done.stdout, done.stderr


# --------------------------------------------------------------------------- paper_cost


def test_paper_projection_matches_hand_arithmetic():
    cost = paper_cost
    rates = cost.Rates({"*": 2959.0}, {"*": 4853.0})
    totals = cost.project(cost.paper_runs(), rates)
    # 45 single + 360 STILTs + 180 MTL + 5 MTL_All
    assert [totals[m]["runs"] for m in ("single", "stilts", "mtl", "mtl_all", "total")] == [45, 360, 180, 5, 590]
    # Sum of the nine training sets: 949,733. Each task is trained by 1 single + 8 STILTs targets
    # + 8 MTL pairs + 1 MTL_All = 18 runs per seed: 10 epochs x 5 seeds x 18 x 949,733.
    assert sum(cost.TRAIN_SIZES.values()) == 949_733
    assert totals["single"]["train_examples"] == 10 * 5 * 949_733 == 47_486_650
    assert totals["total"]["train_examples"] == 854_759_700
    # Dev sets sum to 69,711; 20 evaluations x 5 seeds x 18.
    assert totals["total"]["eval_examples"] == 125_479_800
    assert totals["total"]["train_h"] == pytest.approx(854_759_700 / 2959 / 3600)  # 80.24 h
    assert totals["total"]["train_h"] == pytest.approx(80.24, abs=0.01)
    assert totals["total"]["eval_h"] == pytest.approx(7.18, abs=0.01)
    assert totals["total"]["total_h"] == pytest.approx(87.42, abs=0.01)
    # The shell loop for RTE with MNLI: single RTE, single MNLI, STILTs, MTL, 5 seeds each:
    # train 50 x (3 x 2,490 + 2 x 392,702), eval 100 x (3 x 277 + 2 x 19,647).
    pair = cost.project(cost.pair_loop_runs("rte", "mnli"), rates)["total"]
    assert pair["runs"] == 20
    assert pair["train_examples"] == 39_643_700 and pair["eval_examples"] == 4_012_500
    assert pair["total_h"] == pytest.approx(39_643_700 / 2959 / 3600 + 4_012_500 / 4853 / 3600)


def test_paper_cost_cli_and_json_rates(tmp_path):
    cost = paper_cost
    out = invoke(cost, ["--train-rate", 2959, "--eval-rate", 4853])
    assert "87.4 GPU-hours" in out and "Assumptions" in out
    # A bench.gpu_train result with three measured lengths: tasks take the nearest one.
    cases = [{"name": f"loop-{t}", "kind": "loop", "tasks": [t], "compile": False, "packing": True,
              "train_examples_per_s": r, "eval_examples_per_s": 10 * r, "train_tokens_per_example": n,
              "checkpoint_seconds_per_eval": 2.0} for t, r, n in (("sst2", 9000, 14.0), ("qnli", 5000, 53.0),
                                                                   ("rte", 4000, 66.5))]
    cases.append({"name": "loop-mtl-rte+sst2", "kind": "loop", "tasks": ["rte", "sst2"], "compile": False,
                  "packing": True,
                  "train_examples_per_s": 1.0, "eval_examples_per_s": 1.0, "checkpoint_seconds_per_eval": None})
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"meta": {"machine": "test", "date": "today"}, "cases": cases,
                                "summary": {"mtl_vs_single": 0.8}}))
    rates = cost.rates_from_json(path, "loop")
    assert rates.mtl_factor == 0.8 and rates.checkpoint_seconds == 2.0
    assert [rates.measured_like(t) for t in ("cola", "stsb", "mrpc", "mnli", "qqp", "wnli", "rte")] == \
        ["sst2", "sst2", "qnli", "qnli", "qnli", "qnli", "rte"]
    single_cola = cost.run_cost(cost.Run("single", ("cola",), 1), rates)
    assert single_cola["train_s"] == pytest.approx(10 * 8551 / 9000)
    assert single_cola["checkpoint_s"] == 40.0
    mtl = cost.run_cost(cost.Run("mtl", ("rte", "sst2"), 1), rates)
    assert mtl["train_s"] == pytest.approx(10 * (2490 / 4000 + 67349 / 9000) / 0.8)
    assert "87.4" not in invoke(cost, ["--from-json", path])


# --------------------------------------------------------------------------- helpers


def test_plan_size_and_steady_rates(tmp_path):
    from transformers import RobertaConfig

    plan_size = loop_runner.plan_size
    assert plan_size([5463], 200 * 128) == (None, 5)  # 25,600 / 5,463 -> 5 epochs
    assert plan_size([67349], 25600) == (25600, 1)
    cap, epochs = plan_size([2490, 67349], 25600)
    assert epochs == 1 and 2490 + cap == 25600
    # Two epochs of 10 + 10 + 5 examples, batch 10; logged every 2 steps at rates 10 then 20.
    sizes = [10, 10, 5]
    log = [{"step": 2, "examples_per_second": 10.0}, {"step": 4, "examples_per_second": 20.0},
           {"step": 6, "examples_per_second": 30.0}]
    # Intervals after the first: steps 3-4 = 5 + 10 examples in 0.75 s, 5-6 = 10 + 5 in 0.5 s.
    assert measure.steady_train_rate(log, sizes) == pytest.approx(30 / 1.25)
    assert measure.steady_eval_seconds([9.0, 1.0, 3.0, 2.0]) == 2.0
    # Padding: task 0 has rows of 3 and 10 tokens, task 1 one of 5; one mixed batch of all three.
    import numpy as np

    lengths, batch = [np.array([3, 10]), np.array([5])], np.array([[0, 0], [1, 0], [0, 1]])
    assert measure.padded_tokens(lengths, [batch], None) == 10  # all padded to 10
    assert measure.padded_tokens(lengths, [batch], 8) == 16
    assert measure.padded_tokens(lengths, [batch], None, split=2) == pytest.approx((5 + 5 + 10) / 3)
    assert measure.padded_tokens(lengths, [batch], 8, split=2) == pytest.approx((8 + 8 + 16) / 3)
    # Packed, the batch computes its 18 real tokens; under --compile, its budget of 64.
    assert measure.budgeted_tokens(lengths, [batch]) == pytest.approx(64 / 3)
    # Attention's blocks: rows of 3, 10, 5 share the block of rows up to 16 tokens (3 x 10 places);
    # a row of 20 tokens has a block of its own.
    assert measure.attention_block_tokens(lengths, [batch]) == pytest.approx(30 / 3)
    longer = [np.array([3, 20]), np.array([5])]
    assert measure.attention_block_tokens(longer, [batch]) == pytest.approx((2 * 5 + 20) / 3)
    padding = {"1": 10.0, "packed": 6.0, "budgeted": 21.3}
    assert [measure.computed_tokens(padding, *flags) for flags in ((False, False), (True, False), (True, True))] \
        == [10.0, 6.0, 21.3]
    assert measure.collator_multiple("bf16") == measure.collator_multiple("fp16") == 8
    assert measure.collator_multiple("no") is None
    # DistilRoBERTa-base's shape: 6 layers x (4 x (768^2 + 768) + 2 x 768 x 3072 + 3072 + 768
    # + 2 x 2 x 768) = 42,527,232 parameters outside the embeddings; at issue 6's 2,959 ex/s and
    # 51 tokens per example that is the "39 useful TFLOP/s".
    RobertaConfig(**bench_fixtures.DISTILROBERTA_SHAPE).save_pretrained(tmp_path)
    n = measure.nonembedding_params(tmp_path)
    assert n == 42_527_232
    assert measure.tflops(6, n, 51, 2959) == pytest.approx(38.5, abs=0.05)


def test_loop_runner_reads_the_run_record(tmp_path):
    timing = {"train_seconds": 2.0, "eval_seconds": [0.5, 0.25], "save_seconds": [0.1, 0.3],
              "checkpoint_blocked_seconds": [0.01, 0.02], "examples": 64, "examples_per_second": 32.0,
              "steps": 4, "device": "cpu", "num_processes": 1, "mixed_precision": "no",
              "packed_batches": True}
    (tmp_path / "result.json").write_text(json.dumps({"schema": 1, "method": "single", "timing": timing}))
    (tmp_path / "train_log.jsonl").write_text('{"step": 2, "examples_per_second": 30.0}\n\n'
                                              '{"step": 4, "examples_per_second": 34.0}\n')
    record, log = loop_runner.read_run(tmp_path)
    assert record["timing"] == timing and [e["step"] for e in log] == [2, 4]
    del timing["eval_seconds"], timing["save_seconds"]
    (tmp_path / "result.json").write_text(json.dumps({"schema": 1, "method": "single", "timing": timing}))
    with pytest.raises(KeyError, match="lacks eval_seconds, save_seconds"):
        loop_runner.read_run(tmp_path)


def test_accelerate_environment_is_restored(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    with loop_runner.accelerate_environment("cpu", "no"):
        assert os.environ["ACCELERATE_MIXED_PRECISION"] == "no"
        assert os.environ["ACCELERATE_USE_CPU"] == "true"
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "fp16" and "ACCELERATE_USE_CPU" not in os.environ
    with loop_runner.accelerate_environment("cuda", "bf16"):
        assert "ACCELERATE_USE_CPU" not in os.environ


# --------------------------------------------------------------------------- tiny runs


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a busy shared CPU makes OpenMP threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bench_glue(tiny_glue, tmp_path) -> Path:
    """The tiny GLUE folder with a QNLI dev set (RTE's rows under QNLI's header)."""
    root = tmp_path / "glue"
    for folder in ("SST-2", "RTE"):
        shutil.copytree(tiny_glue / folder, root / folder)
    (root / "QNLI").mkdir()
    rows = (tiny_glue / "RTE" / "dev.tsv").read_text().splitlines()[1:]
    (root / "QNLI" / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


def test_gpu_train_tiny_on_cpu(bench_glue, minilm_path, tmp_path, one_thread):
    gpu = gpu_train
    out = tmp_path / "gpu.json"
    output = invoke(gpu, ["--device", "cpu", "--tiny", "--steps", 4, "--batch-size", 8,
                          "--cases", "loop-qnli,loop-mtl-rte+sst2,loop-mtl-rte+sst2-padded,trainer-paper-qnli",
                          "--data-dir", bench_glue, "--tokenizer", minilm_path, "--max-dev-rows", 10,
                          "--work-dir", tmp_path / "work", "--out", out])
    assert "loop / Trainer (paper)" in output
    result = json.loads(out.read_text())
    names = [c["name"] for c in result["cases"]]
    assert names == ["loop-qnli", "loop-mtl-rte+sst2", "loop-mtl-rte+sst2-padded", "trainer-paper-qnli"]
    assert [c["packing"] for c in result["cases"][:3]] == [True, True, False]
    for case in result["cases"]:
        assert case["train_examples_per_s"] > 0 and case["eval_examples_per_s"] > 0, case
        assert case["train_tflops"] > 0 and case["precision"] == "no"
    assert result["cases"][1]["train_sizes"] == {"rte": 16, "sst2": 16}  # 4 steps x 8, capped evenly
    for case in result["cases"][:3]:  # the loop's own timings, from its run record
        assert case["evaluations"] >= 1 and len(case["eval_seconds"]) == case["evaluations"]
        assert len(case["save_seconds"]) == len(case["checkpoint_blocked_seconds"]) == case["evaluations"]
        assert case["checkpoint_seconds_per_eval"] > 0 and case["checkpoint_write_seconds_per_eval"] > 0
        assert case["loop_device"] == "cpu" and case["dev_scores"]
    packed, padded = result["cases"][1:3]
    assert packed["train_computed_per_real_token"] == 1.0 < padded["train_computed_per_real_token"]
    assert packed["train_sizes"] == padded["train_sizes"]
    assert result["meta"]["nonembedding_params"] > 0 and result["meta"]["max_dev_rows"] == 10
    assert [c["eval_examples"] for c in result["cases"]] == [10, 20, 20, 10]  # --max-dev-rows of each dev file (16 rows)
    assert result["summary"]["train_loop_vs_trainer_paper"] > 0
    assert result["summary"]["packed_vs_padded_mtl-rte+sst2_train"] > 0
    assert "packed / padded" in output


def test_cpu_train_tiny(bench_glue, tmp_path, one_thread):
    cpu = cpu_train
    out = tmp_path / "cpu.json"
    output = invoke(cpu, ["--models", "tiny", "--cases", "rte", "--steps", 3, "--batch-size", 8,
                          "--data-dir", bench_glue, "--out", out])
    assert "| tiny | rte | packed |" in output and "| tiny | rte | padded |" in output
    result = json.loads(out.read_text())
    assert [c["packing"] for c in result["cases"]] == [False, True]  # side by side, one run
    for case in result["cases"]:
        assert case["train_examples_per_s"] > 0 and case["steps"] == 3
        assert len(case["checkpoint_blocked_seconds"]) == 2
    (ratio,) = result["packed_vs_padded"]
    assert ratio["case"] == "rte" and ratio["train"] > 0 and ratio["eval"] > 0


@pytest.mark.slow
def test_cpu_train_packs_tiny_modernbert_and_deberta(bench_glue, tmp_path, one_thread):
    out = tmp_path / "cpu.json"
    invoke(cpu_train, ["--models", "tiny-modernbert,tiny-deberta", "--cases", "mtl-rte+sst2", "--steps", 3,
                       "--batch-size", 8, "--data-dir", bench_glue, "--out", out])
    result = json.loads(out.read_text())
    assert [(c["model_name"], c["packing"]) for c in result["cases"]] == [
        ("tiny-modernbert", False), ("tiny-modernbert", True), ("tiny-deberta", True), ("tiny-deberta", False)]
    for ratio in result["packed_vs_padded"]:
        assert ratio["computed_packed"] == 1.0 < ratio["computed_padded"] and ratio["train"] > 0
        assert 1.0 <= ratio["attention_blocks"] <= ratio["computed_padded"]


def test_compare_report_benchmark_smoke(tmp_path):
    out = tmp_path / "compare.json"
    output = invoke(compare_report, ["--repeats", 1, "--tree", tmp_path / "tree", "--out", out])
    assert "770 run records" in output and "median" in output
    result = json.loads(out.read_text())
    assert result["run_records"] == 770 and len(result["seconds"]) == 1 and result["median_seconds"] > 0
    summary = json.loads((tmp_path / "tree" / "report" / "summary.json").read_text())
    assert len(summary["cells"]) == 72 and summary["missing"] == []


def test_recommend_features_benchmark_smoke(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "recommend.json"
    output = invoke(recommend_features, ["--model", tiny_model, "--data-dir", tiny_glue,
                                         "--examples", 16, "--repeats", 1, "--out", out])
    assert "recommend's embedding pass" in output
    cases = json.loads(out.read_text())["cases"]
    assert [(c["batches"], c["precision"]) for c in cases] == list(recommend_features.CONFIGURATIONS)
    assert all(c["median_seconds"] > 0 and len(c["seconds"]) == 1 for c in cases)
    packed_fp32 = cases[1]
    assert abs(packed_fp32["logme_minus_fp32_padded"]) < 1e-4  # packing changes no number


def test_start_time_benchmark_smoke(tiny_glue, tmp_path):
    out = tmp_path / "start.json"
    output = invoke(start_time, ["--repeats", 1, "--tree", REPO_ROOT, "--data-dir", tiny_glue, "--out", out,
                                 "--cases", "train_stilts --help,train_stilts --target nosuch"])
    assert "| `train_stilts --help` |" in output and "load average" in output
    result = json.loads(out.read_text())
    assert [t["tree"] for t in result["trees"]] == [str(REPO_ROOT.resolve())]
    help_case, error = result["cases"]
    assert [c["trees"][0]["exit"] for c in result["cases"]] == [0, 1]
    assert error["trees"][0]["first_line"].startswith("Error: Unknown task 'nosuch'.")
    for case in result["cases"]:
        assert case["trees"][0]["heavy"] == [] and len(case["trees"][0]["seconds"]) == 1
        assert case["trees"][0]["median_seconds"] > 0
    assert start_time.imported("import time:       141 |        141 |   torch._C\n") == ["torch"]
